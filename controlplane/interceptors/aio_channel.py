"""`intercepted_aio_channel`: grpc.aio with our client stack, unary calls without grpc.aio's interceptor layer.

grpc.aio runs every intercepted unary call in a task of its own, through a chain of coroutines, call-details
objects and done-callback wrappers, beside the task of the call itself; in a real call that costs more client
CPU than the deadline, bulkhead and breaker together (`make bench`). Here the channel is built with our
stack's streaming interceptors only, and a unary-unary call runs the chain around the channel's own call
object in the caller's task, with the interceptor's semantics (`AioUnaryUnaryInterceptor`): a local refusal
is a finished failed call whose error carries `.cause`, a failed call carries the concerns' trailing
metadata, every scope ends once with the call's outcome (also when the caller never awaits the call).
Methods whose concerns may wait (a live or waiting bulkhead) and any other interceptors go through grpc.aio
as before, on a second channel made when first needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import grpc
import grpc.aio

from controlplane.interceptors._aio_client import AioUnaryUnaryInterceptor, aio_refused, failure_trailers
from controlplane.interceptors._chain import CALLER_CANCELLED, RAISED, ClientChain, end_scopes
from controlplane.interceptors._sync_client import details_for
from controlplane.interceptors.call import CallKind, Outcome, OutgoingCall, Rejection, Scope

__all__ = ["intercepted_aio_channel"]

_OK = grpc.StatusCode.OK
_UNARY = CallKind.UNARY_UNARY
_SETTLING: set[asyncio.Task[None]] = set()  # scopes being ended for calls nobody awaited


def intercepted_aio_channel(target: str, interceptors: Sequence[Any] = (), *,
                            credentials: grpc.ChannelCredentials | None = None,
                            options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to `target` with `interceptors`, over TLS with `credentials` (plaintext without), as
    `grpc.aio.insecure_channel(target, options, interceptors)` would make it; when the unary-unary
    interceptor among them is our stack's (what `aio_client_interceptors()` returns), unary calls skip
    grpc.aio's interceptor layer."""
    unary = [i for i in interceptors if isinstance(i, grpc.aio.UnaryUnaryClientInterceptor)]
    if len(unary) == 1 and isinstance(unary[0], AioUnaryUnaryInterceptor):
        return _DirectAioChannel(target, credentials, options, unary[0], [i for i in interceptors if i is not unary[0]])
    return _dial(target, credentials, options, interceptors)


def _dial(target: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]],
          interceptors: Sequence[Any]) -> grpc.aio.Channel:
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors or None)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors or None)


class _DirectAioChannel(grpc.aio.Channel):
    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]],
                 unary: AioUnaryUnaryInterceptor, others: list[Any]) -> None:
        self._dial = lambda interceptors: _dial(target, credentials, options, interceptors)
        self._channel = self._dial(others)  # its unary-unary calls are not intercepted
        self._unary = unary
        self._chain = unary.chain
        self._others = others
        self._intercepted: grpc.aio.Channel | None = None  # every interceptor: for methods whose concerns wait

    def _with_every_interceptor(self) -> grpc.aio.Channel:
        if self._intercepted is None:
            self._intercepted = self._dial([self._unary, *self._others])
        return self._intercepted

    def unary_unary(self, method: str, request_serializer: Callable[..., Any] | None = None,
                    response_deserializer: Callable[..., Any] | None = None,
                    _registered_method: bool | None = False) -> grpc.aio.UnaryUnaryMultiCallable:
        if self._chain.waits(method):
            return self._with_every_interceptor().unary_unary(method, request_serializer, response_deserializer,
                                                              _registered_method)
        direct = self._channel.unary_unary(method, request_serializer, response_deserializer, _registered_method)
        return _DirectUnaryUnary(method, direct, self._chain)

    def unary_stream(self, method: str, request_serializer: Callable[..., Any] | None = None,
                     response_deserializer: Callable[..., Any] | None = None,
                     _registered_method: bool | None = False) -> grpc.aio.UnaryStreamMultiCallable:
        return self._channel.unary_stream(method, request_serializer, response_deserializer, _registered_method)

    def stream_unary(self, method: str, request_serializer: Callable[..., Any] | None = None,
                     response_deserializer: Callable[..., Any] | None = None,
                     _registered_method: bool | None = False) -> grpc.aio.StreamUnaryMultiCallable:
        return self._channel.stream_unary(method, request_serializer, response_deserializer, _registered_method)

    def stream_stream(self, method: str, request_serializer: Callable[..., Any] | None = None,
                      response_deserializer: Callable[..., Any] | None = None,
                      _registered_method: bool | None = False) -> grpc.aio.StreamStreamMultiCallable:
        return self._channel.stream_stream(method, request_serializer, response_deserializer, _registered_method)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    async def close(self, grace: float | None = None) -> None:
        if self._intercepted is not None:
            await self._intercepted.close(grace)
        await self._channel.close(grace)

    async def __aenter__(self) -> _DirectAioChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(None)


class _DirectUnaryUnary(grpc.aio.UnaryUnaryMultiCallable):
    __slots__ = ("_chain", "_direct", "_method")

    def __init__(self, method: str, direct: grpc.aio.UnaryUnaryMultiCallable, chain: ClientChain) -> None:
        self._method = method
        self._direct = direct
        self._chain = chain

    def __call__(self, request: Any, *, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        details = grpc.aio.ClientCallDetails(self._method, timeout, metadata, credentials, wait_for_ready)
        try:
            call, scopes = self._chain.start(details, _UNARY, request)
        except Rejection as rejection:
            return aio_refused(_UNARY, rejection)
        sent = details_for(details, call, grpc.aio.Metadata)
        try:
            rpc = self._direct(request, timeout=sent.timeout, metadata=sent.metadata, credentials=sent.credentials,
                               wait_for_ready=sent.wait_for_ready, compression=compression)
        except BaseException:
            end_scopes(scopes, RAISED)
            raise
        return _DirectUnaryCall(rpc, call, scopes)


class _DirectUnaryCall(grpc.aio.UnaryUnaryCall):
    """The caller's call: grpc.aio's own call object, whose outcome ends the concerns' scopes once. The caller's
    `await` ends them; a call nobody is awaiting when it finishes ends them in a small task of its own."""

    __slots__ = ("_awaiting", "_call", "_ended", "_rpc", "_scopes")

    def __init__(self, rpc: Any, call: OutgoingCall, scopes: list[Scope]) -> None:
        self._rpc = rpc
        self._call = call
        self._scopes = scopes
        self._ended = False
        self._awaiting = 0
        rpc.add_done_callback(self._on_done)

    def _end(self, outcome: Outcome) -> None:
        if not self._ended:
            self._ended = True
            end_scopes(self._scopes, outcome)

    def _on_done(self, _rpc: Any) -> None:
        if self._ended or self._awaiting:
            return  # the awaiting caller ends the scopes when it resumes
        task = asyncio.ensure_future(self._settle())
        _SETTLING.add(task)
        task.add_done_callback(_SETTLING.discard)

    async def _settle(self) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):  # the outcome was wanted, not the response
            await self

    def _stamped(self, error: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
        trailing = failure_trailers(error.trailing_metadata(), self._call)
        if trailing is None:
            return error
        return grpc.aio.AioRpcError(error.code(), error.initial_metadata(), trailing, error.details(),
                                    error.debug_error_string())

    def __await__(self) -> Generator[Any, None, Any]:
        self._awaiting += 1
        try:
            response = yield from self._rpc.__await__()
        except grpc.aio.AioRpcError as error:
            self._end(Outcome(error.code(), error.details()))
            stamped = self._stamped(error)
            if stamped is error:
                raise
            raise stamped from None
        except asyncio.CancelledError:
            self._end(CALLER_CANCELLED)
            raise
        except BaseException:
            self._end(RAISED)
            raise
        finally:
            self._awaiting -= 1
        self._end(Outcome(_OK, response=response if self._call.wants_response else None))
        return response

    async def trailing_metadata(self) -> Any:
        trailing = await self._rpc.trailing_metadata()
        if await self._rpc.code() is not _OK:
            return failure_trailers(trailing, self._call) or trailing
        return trailing

    async def initial_metadata(self) -> Any:
        return await self._rpc.initial_metadata()

    async def code(self) -> grpc.StatusCode:
        return await self._rpc.code()

    async def details(self) -> str:
        return await self._rpc.details()

    async def debug_error_string(self) -> str:
        return await self._rpc.debug_error_string()

    async def wait_for_connection(self) -> None:
        await self._rpc.wait_for_connection()

    def cancelled(self) -> bool:
        return self._rpc.cancelled()

    def done(self) -> bool:
        return self._rpc.done()

    def cancel(self) -> bool:
        return self._rpc.cancel()

    def time_remaining(self) -> float | None:
        return self._rpc.time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._rpc.add_done_callback(lambda _rpc: callback(self))
