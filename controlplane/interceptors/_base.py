"""Plumbing shared by every concern: method names, final status, local errors and handler wrapping.

A concern (deadlines, circuit breaking, bulkheads, trace-id stamping) writes its logic once as a
`ClientConcern` or a `ServerConcern`. The adapters here run a chain of concerns inside a single gRPC
interceptor, for sync channels/servers and for grpc.aio alike, for unary and streaming calls:

- client: each concern's `begin()` sees the outgoing call before it touches the network and may change
  its timeout or refuse it (raise `Rejection`); `finish()` sees the final status of the call, also for
  streams, whenever and on whatever thread the call ends.
- server: each concern's `enter()` runs on the handler's own thread or task, right before the handler,
  and `exit()` right after it (also when it raises or when a response stream ends).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio

__all__ = [
    "ClientConcern",
    "Clock",
    "LocalRpcError",
    "OutgoingCall",
    "Rejection",
    "ServerConcern",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""A monotonic clock in seconds; `time.monotonic` unless a test injects its own."""

Metadata = tuple[tuple[str, str], ...]

_OK = grpc.StatusCode.OK


def split_method(method: str | bytes) -> tuple[str, str]:
    """`'/pkg.Service/Method'` -> `('pkg.Service', 'Method')` (grpc.aio may hand the name over as bytes)."""
    if isinstance(method, bytes):
        method = method.decode()
    service, _, name = method.lstrip("/").partition("/")
    return service, name


_method_cache: dict[str | bytes, tuple[str, str]] = {}


def _parse_method(method: str | bytes) -> tuple[str, str]:
    """`(full_method, service)`, cached: a process calls a bounded set of methods."""
    parsed = _method_cache.get(method)
    if parsed is None:
        full = method.decode() if isinstance(method, bytes) else method
        parsed = (full, split_method(full)[0])
        if len(_method_cache) < 10_000:
            _method_cache[method] = parsed
    return parsed


class OutgoingCall:
    """One outgoing call as concerns see it; `begin()` may lower `timeout` (seconds, None = no deadline).

    `streaming`: the call has a response stream (Watch and the like), which may rightly last as long as
    the caller wants: concerns must not give it a unary call's default deadline or judge it slow.
    """

    __slots__ = ("error_metadata", "method", "service", "streaming", "timeout")

    def __init__(self, method: str, service: str, timeout: float | None, streaming: bool = False) -> None:
        self.method = method  # "/pkg.Service/Method"
        self.service = service  # "pkg.Service"
        self.timeout = timeout
        self.streaming = streaming
        self.error_metadata: list[tuple[str, str]] = []  # added to the trailing metadata of a failed call


class Rejection(Exception):
    """Raised by `ClientConcern.begin()` to fail a call locally, without touching the network.

    `cause` is the typed reason (a `BreakerOpen`, say): the error the caller gets carries it as `.cause`,
    so a caller can tell a local refusal from a server's answer without decoding trailing metadata (a
    server can send the same metadata; it cannot send a Python object).
    """

    def __init__(self, code: grpc.StatusCode, details: str, metadata: Metadata = (),
                 cause: Exception | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.metadata = metadata
        self.cause = cause


class ClientConcern:
    """One client-side policy; subclasses override what they need."""

    waits = False
    """True when `begin()` may block: the asyncio adapter then awaits `begin_async()` instead."""

    def begin(self, call: OutgoingCall) -> Any:
        """Before the call is sent; returns a ticket handed back to `finish()`. May raise `Rejection`."""
        return None

    async def begin_async(self, call: OutgoingCall) -> Any:
        """`begin()` for asyncio channels, for concerns that wait (`waits = True`)."""
        return self.begin(call)

    def finish(self, ticket: Any, code: grpc.StatusCode) -> None:
        """Once, with the final status, after the call ended (any thread; must not raise, must not block)."""


class ServerConcern:
    """One server-side policy, run around every handler on the handler's own thread or task."""

    def enter(self, method: str, context: Any) -> Any:
        """Before the handler; returns a token handed back to `exit()`."""
        return None

    def exit(self, token: Any, context: Any) -> None:
        """After the handler returned, raised or ended its response stream."""


# --- errors the caller sees -------------------------------------------------------------------------


class LocalRpcError(grpc.RpcError, grpc.Call, grpc.Future):
    """A failed call, for sync channels: raised by `result()`, by iteration, and usable as a `grpc.Call`.

    Used for calls a concern refused before they reached the network, and to add trailing metadata
    (the trace id) to a call that failed without any.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: Metadata = (),
        initial_metadata: Metadata = (),
        debug_error_string: str | None = None,
        cause: Exception | None = None,
    ) -> None:
        super().__init__()
        self.cause = cause  # the typed reason of a local refusal (see Rejection), None otherwise
        self._code = code
        self._details = details
        self._trailing = trailing_metadata
        self._initial = initial_metadata
        self._debug = debug_error_string

    @classmethod
    def with_extra_trailing(cls, error: Any, extra: Sequence[tuple[str, str]]) -> LocalRpcError:
        """A copy of a finished, failed call or RpcError with `extra` added to its trailing metadata."""
        debug = getattr(error, "debug_error_string", None)
        return cls(
            error.code(),
            error.details() or "",
            tuple(error.trailing_metadata() or ()) + tuple(extra),
            tuple(error.initial_metadata() or ()),
            debug() if callable(debug) else None,
        )

    def __str__(self) -> str:
        return f'<{type(self).__name__}: status = {self._code}, details = "{self._details}">'

    __repr__ = __str__

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def initial_metadata(self) -> Metadata:
        return self._initial

    def debug_error_string(self) -> str | None:
        return self._debug

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> BaseException:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def __iter__(self) -> LocalRpcError:
        return self

    def __next__(self) -> Any:
        raise self


class _FailedAioCall:
    """A finished, failed grpc.aio call: what the asyncio adapter returns instead of raising.

    Interceptors further out (OpenTelemetry's among them) expect a call object back and read its status;
    an exception raised from inside would skip their bookkeeping (OpenTelemetry would never end its span).
    """

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        self._error = error

    def cancelled(self) -> bool:
        return self._error.code() is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    async def initial_metadata(self) -> Any:
        return self._error.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return self._error.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        return self._error.code()

    async def details(self) -> str | None:
        return self._error.details()

    async def debug_error_string(self) -> str | None:
        return self._error.debug_error_string()

    async def wait_for_connection(self) -> None:
        raise self._error

    # unary responses
    def __await__(self) -> Any:
        raise self._error
        yield  # a generator, as __await__ must be

    # streaming responses
    def __aiter__(self) -> _FailedAioCall:
        return self

    async def __anext__(self) -> Any:
        raise self._error

    async def read(self) -> Any:
        raise self._error

    # streaming requests
    async def write(self, request: Any) -> None:
        raise self._error

    async def done_writing(self) -> None:
        return None


class _FailedUnaryUnaryCall(_FailedAioCall, grpc.aio.UnaryUnaryCall):
    pass


class _FailedUnaryStreamCall(_FailedAioCall, grpc.aio.UnaryStreamCall):
    pass


class _FailedStreamUnaryCall(_FailedAioCall, grpc.aio.StreamUnaryCall):
    pass


class _FailedStreamStreamCall(_FailedAioCall, grpc.aio.StreamStreamCall):
    pass


class LocalAioRpcError(grpc.aio.AioRpcError):
    """The `AioRpcError` of a call refused locally; `.cause` is the typed reason (see Rejection)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str]] = (),
                 cause: Exception | None = None) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details, None)
        self.cause = cause


def aio_error(code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str]] = (),
              cause: Exception | None = None) -> grpc.aio.AioRpcError:
    """The `AioRpcError` an asyncio caller gets for a call refused locally."""
    return LocalAioRpcError(code, details, trailing, cause)


def _has_key(metadata: Any, key: str) -> bool:
    return any(k == key for k, _ in metadata or ())


def _missing(metadata: Any, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in extra if not _has_key(metadata, k)]


# --- client adapters --------------------------------------------------------------------------------


class CallDetails(
    collections.namedtuple(
        "CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """`grpc.ClientCallDetails` for sync channels, with a changed timeout or metadata."""


def replace_details(details: Any, **changes: Any) -> Any:
    """`details` with some fields changed; works for sync and grpc.aio call details."""
    replace = getattr(details, "_replace", None)
    if replace is not None:
        return replace(**changes)
    fields = {name: getattr(details, name, None) for name in CallDetails._fields}
    fields.update(changes)
    return CallDetails(**fields)


class _Chain:
    """Runs `begin()` of every concern in order and `finish()` in reverse order."""

    __slots__ = ("_concerns", "_finishers", "_waits")

    def __init__(self, concerns: Sequence[ClientConcern]) -> None:
        self._concerns = tuple(concerns)
        self._waits = any(c.waits for c in self._concerns)

    def start(self, details: Any, streaming: bool = False) -> tuple[OutgoingCall, list[Any]]:
        method, service = _parse_method(details.method)
        call = OutgoingCall(method, service, details.timeout, streaming)
        tickets: list[Any] = []
        try:
            for concern in self._concerns:
                tickets.append(concern.begin(call))
        except Rejection as rejection:
            self.finish(tickets, grpc.StatusCode.CANCELLED)
            rejection.metadata = (*rejection.metadata, *call.error_metadata)
            raise
        return call, tickets

    async def start_async(self, details: Any, streaming: bool = False) -> tuple[OutgoingCall, list[Any]]:
        if not self._waits:
            return self.start(details, streaming)
        method, service = _parse_method(details.method)
        call = OutgoingCall(method, service, details.timeout, streaming)
        tickets: list[Any] = []
        try:
            for concern in self._concerns:
                tickets.append(await concern.begin_async(call) if concern.waits else concern.begin(call))
        except BaseException as error:
            self.finish(tickets, grpc.StatusCode.CANCELLED)
            if isinstance(error, Rejection):
                error.metadata = (*error.metadata, *call.error_metadata)
            raise
        return call, tickets

    def finish(self, tickets: list[Any], code: grpc.StatusCode | None) -> None:
        code = code or grpc.StatusCode.UNKNOWN
        concerns = self._concerns
        for i in range(len(tickets) - 1, -1, -1):
            try:
                concerns[i].finish(tickets[i], code)
            except Exception:
                log.exception("interceptor concern %s failed in finish()", type(concerns[i]).__name__)


def _finish_when_done(chain: _Chain, tickets: list[Any]) -> Callable[[Any], None]:
    def done(future: Any) -> None:
        chain.finish(tickets, future.code())

    return done


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Runs a chain of concerns for every kind of call on a sync channel (`grpc.intercept_channel`)."""

    def __init__(self, concerns: Sequence[ClientConcern]) -> None:
        self._chain = _Chain(concerns)

    def _intercept(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any,
                   streaming: bool = False) -> Any:
        chain = self._chain
        try:
            call, tickets = chain.start(details, streaming)
        except Rejection as rejection:
            return LocalRpcError(rejection.code, rejection.details, rejection.metadata, cause=rejection.cause)
        if call.timeout != details.timeout:
            details = replace_details(details, timeout=call.timeout)
        try:
            outcome = continuation(details, request)
        except BaseException:
            chain.finish(tickets, grpc.StatusCode.UNKNOWN)
            raise
        if not outcome.done():  # futures and response streams: judged when they end
            outcome.add_done_callback(_finish_when_done(chain, tickets))
            return outcome
        code = outcome.code()
        chain.finish(tickets, code)
        # Stamp RPC failures only: an exception raised on the client side (a serializer's, say) stays as is.
        if code is not _OK and call.error_metadata and isinstance(outcome.exception(), grpc.RpcError):
            extra = _missing(outcome.trailing_metadata(), call.error_metadata)
            if extra:
                return LocalRpcError.with_extra_trailing(outcome, extra)
        return outcome

    intercept_unary_unary = _intercept
    intercept_stream_unary = _intercept

    def intercept_unary_stream(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request, streaming=True)

    def intercept_stream_stream(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request, streaming=True)


class _AioChainInterceptor:
    """The asyncio adapter; grpc.aio wants one interceptor object per kind of call, see the subclasses.

    Failed calls are returned as finished call objects, never raised (see `_FailedAioCall`).
    """

    _failed: type[_FailedAioCall] = _FailedUnaryUnaryCall

    def __init__(self, concerns: Sequence[ClientConcern]) -> None:
        self._chain = _Chain(concerns)
        self._pending: set[asyncio.Task[Any]] = set()

    async def _unary_response(self, continuation: Any, details: Any, request: Any) -> Any:
        try:
            call, tickets = await self._chain.start_async(details)
        except Rejection as rejection:
            return self._failed(aio_error(rejection.code, rejection.details, rejection.metadata, rejection.cause))
        if call.timeout != details.timeout:
            details = replace_details(details, timeout=call.timeout)
        try:
            rpc = await continuation(details, request)
            code = await rpc.code()
        except asyncio.CancelledError:
            self._chain.finish(tickets, grpc.StatusCode.CANCELLED)
            raise
        except BaseException:
            self._chain.finish(tickets, grpc.StatusCode.UNKNOWN)
            raise
        self._chain.finish(tickets, code)
        if code is not _OK and call.error_metadata:
            trailing = await rpc.trailing_metadata()
            extra = _missing(trailing, call.error_metadata)
            if extra:
                error = grpc.aio.AioRpcError(
                    code,
                    await rpc.initial_metadata(),
                    grpc.aio.Metadata(*tuple(trailing or ()), *extra),
                    await rpc.details(),
                    await rpc.debug_error_string(),
                )
                return self._failed(error)
        return rpc

    async def _stream_response(self, continuation: Any, details: Any, request: Any) -> Any:
        try:
            call, tickets = await self._chain.start_async(details, streaming=True)
        except Rejection as rejection:
            return self._failed(aio_error(rejection.code, rejection.details, rejection.metadata, rejection.cause))
        if call.timeout != details.timeout:
            details = replace_details(details, timeout=call.timeout)
        try:
            rpc = await continuation(details, request)
        except BaseException:
            self._chain.finish(tickets, grpc.StatusCode.UNKNOWN)
            raise
        rpc.add_done_callback(lambda done: self._read_final_status(done, tickets))
        return rpc

    def _read_final_status(self, rpc: Any, tickets: list[Any]) -> None:
        # grpc.aio only offers the status as a coroutine; it is ready by now, so this task ends at once.
        task = asyncio.ensure_future(rpc.code())
        self._pending.add(task)
        task.add_done_callback(lambda t: self._finish_from(t, tickets))

    def _finish_from(self, task: asyncio.Task[Any], tickets: list[Any]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            code = grpc.StatusCode.CANCELLED
        elif task.exception() is not None:
            code = grpc.StatusCode.UNKNOWN
        else:
            code = task.result()
        self._chain.finish(tickets, code)


class AioUnaryUnaryInterceptor(_AioChainInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    _failed = _FailedUnaryUnaryCall

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._unary_response(continuation, client_call_details, request)


class AioUnaryStreamInterceptor(_AioChainInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    _failed = _FailedUnaryStreamCall

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._stream_response(continuation, client_call_details, request)


class AioStreamUnaryInterceptor(_AioChainInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    _failed = _FailedStreamUnaryCall

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._unary_response(continuation, client_call_details, request_iterator)


class AioStreamStreamInterceptor(_AioChainInterceptor, grpc.aio.StreamStreamClientInterceptor):
    _failed = _FailedStreamStreamCall

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._stream_response(continuation, client_call_details, request_iterator)


def aio_client_chain(concerns: Sequence[ClientConcern]) -> list[grpc.aio.ClientInterceptor]:
    """The asyncio adapter for a chain of concerns: one interceptor per kind of call, as grpc.aio wants."""
    return [
        AioUnaryUnaryInterceptor(concerns),
        AioUnaryStreamInterceptor(concerns),
        AioStreamUnaryInterceptor(concerns),
        AioStreamStreamInterceptor(concerns),
    ]


# --- server adapters --------------------------------------------------------------------------------

_HANDLER_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def wrap_handler(handler: Any, wrap: Callable[[Callable[..., Any], bool], Callable[..., Any]]) -> Any:
    """A copy of an `RpcMethodHandler` whose behaviour is `wrap(behaviour, response_streaming)`."""
    if handler is None:
        return None
    attribute, factory = _HANDLER_FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(
        wrap(getattr(handler, attribute), handler.response_streaming),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _WrappedHandlers:
    """Wrapped handlers by original handler: a server looks up the same handler object for every call
    to a method, so wrapping it once per method keeps handler construction off the per-call path."""

    def __init__(self, wrap: Callable[[str, Callable[..., Any], bool], Callable[..., Any]]) -> None:
        self._wrap = wrap
        self._cache: dict[int, tuple[Any, Any]] = {}  # id(handler) -> (handler, wrapped); holding it pins the id

    def get(self, method: str, handler: Any) -> Any:
        if handler is None:
            return None
        cached = self._cache.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap_handler(handler, lambda behavior, streaming: self._wrap(method, behavior, streaming))
        if len(self._cache) < 10_000:
            self._cache[id(handler)] = (handler, wrapped)
        return wrapped


class _ServerChain:
    __slots__ = ("_concerns",)

    def __init__(self, concerns: Sequence[ServerConcern]) -> None:
        self._concerns = tuple(concerns)

    def enter(self, method: str, context: Any) -> list[Any]:
        tokens = []
        for concern in self._concerns:
            tokens.append(concern.enter(method, context))
        return tokens

    def exit(self, tokens: list[Any], context: Any) -> None:
        concerns = self._concerns
        for i in range(len(tokens) - 1, -1, -1):
            try:
                concerns[i].exit(tokens[i], context)
            except Exception:
                log.exception("interceptor concern %s failed in exit()", type(concerns[i]).__name__)


class ServerInterceptor(grpc.ServerInterceptor):
    """Runs a chain of server concerns around every handler of a sync server (thread per request)."""

    def __init__(self, concerns: Sequence[ServerConcern]) -> None:
        self._chain = _ServerChain(concerns)
        self._handlers = _WrappedHandlers(self._wrap)

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        return self._handlers.get(handler_call_details.method, continuation(handler_call_details))

    def _wrap(self, method: str, behavior: Callable[..., Any], response_streaming: bool) -> Callable[..., Any]:
        chain = self._chain
        if response_streaming:

            def streaming(request: Any, context: Any) -> Any:
                tokens = chain.enter(method, context)
                try:
                    yield from behavior(request, context)
                finally:
                    chain.exit(tokens, context)

            return streaming

        def unary(request: Any, context: Any) -> Any:
            tokens = chain.enter(method, context)
            try:
                return behavior(request, context)
            finally:
                chain.exit(tokens, context)

        return unary


class AioServerInterceptor(grpc.aio.ServerInterceptor):
    """Runs a chain of server concerns around every handler of a grpc.aio server (task per request)."""

    def __init__(self, concerns: Sequence[ServerConcern]) -> None:
        self._chain = _ServerChain(concerns)
        self._handlers = _WrappedHandlers(self._wrap)

    async def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        return self._handlers.get(handler_call_details.method, handler)

    def _wrap(self, method: str, behavior: Callable[..., Any], response_streaming: bool) -> Callable[..., Any]:
        chain = self._chain
        if response_streaming and inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Any) -> Any:
                tokens = chain.enter(method, context)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    chain.exit(tokens, context)

            return streaming

        # Unary handlers, and streaming handlers that write with `await context.write()`.
        async def call(request: Any, context: Any) -> Any:
            tokens = chain.enter(method, context)
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                chain.exit(tokens, context)

        return call
