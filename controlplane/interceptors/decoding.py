"""Server concern: a request that cannot be decoded is the client's mistake, so it gets INVALID_ARGUMENT.

grpcio answers a request its deserializer refuses with UNKNOWN (asyncio) or INTERNAL and a traceback
(sync). These interceptors give every handler a deserializer that turns a refusal into a marker, and
end such a call with INVALID_ARGUMENT and `google.rpc.BadRequest` details before any handler (or any
inner interceptor) runs. One log line is written per refused request. Each method's handler is wrapped
once, as the concerns' are (see `_server.HandlerCache`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from controlplane.interceptors._server import HandlerCache

log = logging.getLogger(__name__)

# Protobuf refuses messages nested deeper than this (Struct values count two levels each).
PROTOBUF_RECURSION_LIMIT = 100


class Undecodable:
    """Stands in for a request that protobuf could not decode."""

    __slots__ = ("method", "reason")

    def __init__(self, method: str, reason: str) -> None:
        self.method = method
        self.reason = reason


def _tolerant(method: str, decode: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if decode is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as exc:  # DecodeError, RecursionError, a hand-written deserializer's ValueError...
            return Undecodable(method, str(exc) or type(exc).__name__)

    return deserialize


def _status(request: Undecodable) -> grpc.Status:
    from controlplane.errors import ValidationError, grpc_status_for  # errors imports grpcio-status lazily here

    log.info("refused an undecodable request to %s: %s", request.method, request.reason[:200])
    return grpc_status_for(ValidationError.single(
        "request",
        "cannot be decoded as the method's request message (malformed protobuf, or messages nested more than "
        f"{PROTOBUF_RECURSION_LIMIT} deep)",
    ))


def _replaced(handler: grpc.RpcMethodHandler, method: str,
              refusing: Callable[[Callable[..., Any], bool], Callable[..., Any]]) -> grpc.RpcMethodHandler:
    """`handler` with a tolerant deserializer and its behaviour wrapped by `refusing(behaviour, streaming)`."""
    deserializer = _tolerant(method, handler.request_deserializer)
    if handler.unary_unary is not None:
        return handler._replace(unary_unary=refusing(handler.unary_unary, False),  # type: ignore[attr-defined]
                                request_deserializer=deserializer)
    return handler._replace(unary_stream=refusing(handler.unary_stream, True),  # type: ignore[attr-defined]
                            request_deserializer=deserializer)


def _wrap_sync(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    if handler.request_streaming:
        return handler  # each message of a stream is decoded as it is read; see the streaming handler's own checks

    def refusing(behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
        if streaming:
            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                if isinstance(request, Undecodable):
                    context.abort_with_status(_status(request))
                yield from behaviour(request, context)
            return stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                context.abort_with_status(_status(request))
            return behaviour(request, context)
        return unary

    return _replaced(handler, method, refusing)


def _wrap_aio(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    if handler.request_streaming:
        return handler

    def refusing(behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
        if streaming:
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await context.abort_with_status(_status(request))
                result = behaviour(request, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write() and returns a coroutine
                    await result
            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await context.abort_with_status(_status(request))
            result = behaviour(request, context)
            return await result if isinstance(result, Awaitable) else result
        return unary

    return _replaced(handler, method, refusing)


class RefuseUndecodable(grpc.ServerInterceptor):
    """Sync server interceptor: undecodable requests answer INVALID_ARGUMENT. Put it first."""

    def __init__(self) -> None:
        self._handlers = HandlerCache()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._handlers.get(handler, lambda found: _wrap_sync(found, handler_call_details.method))


class AioRefuseUndecodable(grpc.aio.ServerInterceptor):
    """grpc.aio server interceptor: undecodable requests answer INVALID_ARGUMENT. Put it first."""

    def __init__(self) -> None:
        self._handlers = HandlerCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._handlers.get(handler, lambda found: _wrap_aio(found, handler_call_details.method))
