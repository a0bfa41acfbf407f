"""The server adapters: run a chain of server concerns around every handler, sync and grpc.aio.

Each method's handler is wrapped once (a server looks up the same handler object for every call to a
method), so handler construction stays off the per-call path. Concerns start on the handler's own thread or
task, right before it, and their scopes end right after it with the status it left (`server_outcome`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from controlplane.interceptors._chain import ServerChain, end_scopes, server_outcome
from controlplane.interceptors.call import CallKind, IncomingCall, Method, ServerConcern

__all__ = ["AioServerInterceptor", "HandlerCache", "ServerInterceptor", "wrap_handler"]

_HANDLER_FACTORIES = {
    CallKind.UNARY_UNARY: ("unary_unary", grpc.unary_unary_rpc_method_handler),
    CallKind.UNARY_STREAM: ("unary_stream", grpc.unary_stream_rpc_method_handler),
    CallKind.STREAM_UNARY: ("stream_unary", grpc.stream_unary_rpc_method_handler),
    CallKind.STREAM_STREAM: ("stream_stream", grpc.stream_stream_rpc_method_handler),
}

Wrap = Callable[[Callable[..., Any], CallKind], Callable[..., Any]]


def handler_kind(handler: Any) -> CallKind:
    return CallKind.of(bool(handler.request_streaming), bool(handler.response_streaming))


def wrap_handler(handler: Any, wrap: Wrap) -> Any:
    """A copy of an `RpcMethodHandler` whose behaviour is `wrap(behaviour, kind)`."""
    if handler is None:
        return None
    kind = handler_kind(handler)
    attribute, factory = _HANDLER_FACTORIES[kind]
    return factory(
        wrap(getattr(handler, attribute), kind),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class HandlerCache:
    """Wrapped handlers by original handler: a server looks up the same handler object for every call to a
    method, so each is wrapped once and per-call work stays out of the wrapping."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, Any]] = {}  # id(handler) -> (handler, wrapped); holding it pins the id

    def get(self, handler: Any, wrap: Callable[[Any], Any]) -> Any:
        cached = self._cache.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap(handler)
        if len(self._cache) < 10_000:
            self._cache[id(handler)] = (handler, wrapped)
        return wrapped


class _WrappedHandlers:
    """Each method's handler wrapped once with the concerns its method selects."""

    def __init__(self, chain: ServerChain,
                 wrap: Callable[[Method, tuple[ServerConcern, ...], Callable[..., Any], CallKind], Callable[..., Any]]
                 ) -> None:
        self._chain = chain
        self._wrap = wrap
        self._cache = HandlerCache()

    def get(self, raw_method: str, handler: Any) -> Any:
        if handler is None:
            return None
        return self._cache.get(handler, lambda found: self._wrapped(raw_method, found))

    def _wrapped(self, raw_method: str, handler: Any) -> Any:
        method, concerns = self._chain.select(raw_method)
        if not concerns:
            return handler
        return wrap_handler(handler, lambda behavior, kind: self._wrap(method, concerns, behavior, kind))


class _Around:
    """The concerns' scopes around one handler call: started on entry, ended on exit with the status the
    handler left (a class, not a generator-based context manager: this runs on every call)."""

    __slots__ = ("_call", "_concerns", "_scopes")

    def __init__(self, concerns: tuple[ServerConcern, ...], call: IncomingCall) -> None:
        self._concerns = concerns
        self._call = call

    def __enter__(self) -> None:
        self._scopes = ServerChain.start(self._concerns, self._call)

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        end_scopes(self._scopes, server_outcome(self._call.context, error))


class ServerInterceptor(grpc.ServerInterceptor):
    """Runs a chain of server concerns around every handler of a sync server (thread per request)."""

    def __init__(self, concerns: Sequence[ServerConcern]) -> None:
        self._handlers = _WrappedHandlers(ServerChain(concerns), self._wrap)

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        return self._handlers.get(handler_call_details.method, continuation(handler_call_details))

    @staticmethod
    def _wrap(method: Method, concerns: tuple[ServerConcern, ...], behavior: Callable[..., Any],
              kind: CallKind) -> Callable[..., Any]:
        if kind.response_streaming:

            def streaming(request: Any, context: Any) -> Any:
                with _Around(concerns, IncomingCall(method, kind, context)):
                    yield from behavior(request, context)

            return streaming

        def unary(request: Any, context: Any) -> Any:
            with _Around(concerns, IncomingCall(method, kind, context)):
                return behavior(request, context)

        return unary


class AioServerInterceptor(grpc.aio.ServerInterceptor):
    """Runs a chain of server concerns around every handler of a grpc.aio server (task per request)."""

    def __init__(self, concerns: Sequence[ServerConcern]) -> None:
        self._handlers = _WrappedHandlers(ServerChain(concerns), self._wrap)

    async def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        return self._handlers.get(handler_call_details.method, handler)

    @staticmethod
    def _wrap(method: Method, concerns: tuple[ServerConcern, ...], behavior: Callable[..., Any],
              kind: CallKind) -> Callable[..., Any]:
        if kind.response_streaming and inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Any) -> Any:
                with _Around(concerns, IncomingCall(method, kind, context)):
                    async for response in behavior(request, context):
                        yield response

            return streaming

        # Unary handlers, and streaming handlers that write with `await context.write()`.
        async def call(request: Any, context: Any) -> Any:
            with _Around(concerns, IncomingCall(method, kind, context)):
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result

        return call
