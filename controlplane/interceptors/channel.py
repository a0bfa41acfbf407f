"""`intercepted_channel`: our client stack on a sync channel, unary calls without grpcio's interceptor layer.

`grpc.intercept_channel` builds a fresh multicallable, call details, an outcome object and a rendezvous for
every call before any concern runs; in a real call that costs ~30-50 µs of client CPU, more than the
deadline, bulkhead and breaker together (`make bench`). Here a unary-unary call made with `__call__` or
`with_call` runs the chain around the channel's own multicallable directly, with the same semantics as the
interceptor (`ClientInterceptor`): a local refusal raises `LocalRpcError`, a failed call carries the
concerns' trailing metadata, every scope ends once with the call's outcome. Futures and streams go through
`grpc.intercept_channel` as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from controlplane.interceptors._chain import RAISED, ClientChain, end_scopes
from controlplane.interceptors._sync_client import CallDetails, ClientInterceptor, details_for, refused, stamped
from controlplane.interceptors.call import CallKind, Outcome, Rejection

__all__ = ["intercepted_channel"]

_OK = grpc.StatusCode.OK
_UNARY = CallKind.UNARY_UNARY
_INTERCEPTED = Outcome(grpc.StatusCode.INTERNAL, "Exception raised while intercepting the RPC")  # grpcio's words


def intercepted_channel(channel: grpc.Channel, *interceptors: Any) -> grpc.Channel:
    """`channel` with `interceptors`, as `grpc.intercept_channel(channel, *interceptors)` would give it; when
    they are our one stack interceptor (what `client_interceptors()` returns), unary calls skip grpcio's
    interceptor layer."""
    if len(interceptors) == 1 and isinstance(interceptors[0], ClientInterceptor):
        return _DirectChannel(channel, interceptors[0])
    return grpc.intercept_channel(channel, *interceptors)


class _DirectChannel(grpc.Channel):
    def __init__(self, channel: grpc.Channel, interceptor: ClientInterceptor) -> None:
        self._channel = channel
        self._chain = interceptor.chain
        self._intercepted = grpc.intercept_channel(channel, interceptor)

    def unary_unary(self, method: str, request_serializer: Callable[..., Any] | None = None,
                    response_deserializer: Callable[..., Any] | None = None,
                    _registered_method: bool | None = False) -> grpc.UnaryUnaryMultiCallable:
        # The registration flag goes on positionally, as grpcio's own intercepted channel passes it.
        direct = self._channel.unary_unary(method, request_serializer, response_deserializer,
                                           _registered_method)  # type: ignore[call-arg]
        intercepted = self._intercepted.unary_unary(method, request_serializer, response_deserializer,
                                                    _registered_method)  # type: ignore[call-arg]
        return _DirectUnaryUnary(method, direct, intercepted, self._chain)

    def unary_stream(self, method: str, request_serializer: Callable[..., Any] | None = None,
                     response_deserializer: Callable[..., Any] | None = None,
                     _registered_method: bool | None = False) -> grpc.UnaryStreamMultiCallable:
        return self._intercepted.unary_stream(method, request_serializer, response_deserializer,
                                              _registered_method)  # type: ignore[call-arg]

    def stream_unary(self, method: str, request_serializer: Callable[..., Any] | None = None,
                     response_deserializer: Callable[..., Any] | None = None,
                     _registered_method: bool | None = False) -> grpc.StreamUnaryMultiCallable:
        return self._intercepted.stream_unary(method, request_serializer, response_deserializer,
                                              _registered_method)  # type: ignore[call-arg]

    def stream_stream(self, method: str, request_serializer: Callable[..., Any] | None = None,
                      response_deserializer: Callable[..., Any] | None = None,
                      _registered_method: bool | None = False) -> grpc.StreamStreamMultiCallable:
        return self._intercepted.stream_stream(method, request_serializer, response_deserializer,
                                               _registered_method)  # type: ignore[call-arg]

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> _DirectChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DirectUnaryUnary(grpc.UnaryUnaryMultiCallable):
    __slots__ = ("_chain", "_direct", "_intercepted", "_method")

    def __init__(self, method: str, direct: grpc.UnaryUnaryMultiCallable, intercepted: grpc.UnaryUnaryMultiCallable,
                 chain: ClientChain) -> None:
        self._method = method
        self._direct = direct
        self._intercepted = intercepted
        self._chain = chain

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        details = CallDetails(self._method, timeout, metadata, credentials, wait_for_ready, compression)
        return self._invoke(request, details)[0]

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                  wait_for_ready: bool | None = None, compression: Any = None) -> tuple[Any, grpc.Call]:
        details = CallDetails(self._method, timeout, metadata, credentials, wait_for_ready, compression)
        return self._invoke(request, details)

    def future(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
               wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._intercepted.future(request, timeout=timeout, metadata=metadata, credentials=credentials,
                                        wait_for_ready=wait_for_ready, compression=compression)

    def _invoke(self, request: Any, details: CallDetails) -> tuple[Any, grpc.Call]:
        try:
            call, scopes = self._chain.start(details, _UNARY, request)
        except Rejection as rejection:
            raise refused(rejection) from None
        sent = details_for(details, call)
        try:
            response, rendezvous = self._direct.with_call(
                request, timeout=sent.timeout, metadata=sent.metadata, credentials=sent.credentials,
                wait_for_ready=sent.wait_for_ready, compression=sent.compression)
        except grpc.RpcError as error:
            end_scopes(scopes, Outcome(error.code(), error.details()))  # type: ignore[attr-defined]
            with_trailers = stamped(error, call)
            if with_trailers is error:
                raise
            raise with_trailers from None
        except Exception:
            end_scopes(scopes, _INTERCEPTED)
            raise
        except BaseException:
            end_scopes(scopes, RAISED)
            raise
        end_scopes(scopes, Outcome(_OK, response=response if call.wants_response else None))
        return response, rendezvous
