"""What a concern sees of a call, and the scope it opens for it.

A concern (deadlines, circuit breaking, bulkheads, tracing) writes its logic once against these types; the
adapters (`_sync_client`, `_aio_client`, `_server`) run it for sync and asyncio channels and servers alike:

- client: `ClientConcern.start(call)` sees an `OutgoingCall` before it touches the network; it may lower the
  timeout, add request metadata, or refuse the call (raise `Rejection`). The `Scope` it returns is ended
  once with the call's final `Outcome`, also for streams, whenever and on whatever thread the call ends.
- server: `ServerConcern.start(call)` sees an `IncomingCall` on the handler's own thread or task, right
  before the handler; its scope is ended right after the handler (returned, raised, or ended its response
  stream) with the status the handler left, on the same thread or task.

A concern applies to the methods its `methods` selector accepts (all of them unless told otherwise).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from controlplane.interceptors.methods import ALL_METHODS, MethodSelector

__all__ = [
    "CallKind",
    "ClientConcern",
    "Clock",
    "IncomingCall",
    "Metadata",
    "Method",
    "Outcome",
    "OutgoingCall",
    "Rejection",
    "Scope",
    "ServerConcern",
    "method_of",
]

Clock = Callable[[], float]
"""A monotonic clock in seconds; `time.monotonic` unless a test injects its own."""

Metadata = tuple[tuple[str, str], ...]


class CallKind(enum.Enum):
    """The shape of a call: whether requests and responses are streams."""

    UNARY_UNARY = (False, False)
    UNARY_STREAM = (False, True)
    STREAM_UNARY = (True, False)
    STREAM_STREAM = (True, True)

    @property
    def request_streaming(self) -> bool:
        return self.value[0]

    @property
    def response_streaming(self) -> bool:
        return self.value[1]

    @classmethod
    def of(cls, request_streaming: bool, response_streaming: bool) -> CallKind:
        return _KINDS[(request_streaming, response_streaming)]


_KINDS = {kind.value: kind for kind in CallKind}


class Method:
    """A method name in its three forms: `full` "/pkg.Service/Method", `service` "pkg.Service", `name` "Method"."""

    __slots__ = ("full", "name", "service")

    def __init__(self, full: str) -> None:
        self.full = full
        self.service, _, self.name = full.lstrip("/").partition("/")

    @property
    def qualified(self) -> str:
        """ "pkg.Service/Method", as service configs and policies name it."""
        return f"{self.service}/{self.name}"

    def __repr__(self) -> str:
        return f"Method({self.full!r})"


_methods: dict[str | bytes, Method] = {}


def method_of(method: str | bytes) -> Method:
    """The parsed method, cached: a process calls a bounded set of methods (grpc.aio may pass bytes)."""
    parsed = _methods.get(method)
    if parsed is None:
        parsed = Method(method.decode() if isinstance(method, bytes) else method)
        if len(_methods) < 10_000:
            _methods[method] = parsed
    return parsed


class Outcome:
    """How a call ended: its status code and details (None when there were none).

    error: on servers, the exception a handler raised that was not an abort (a bug, say); else None.
    response: on clients, the response message of a call with one response that ended OK, when a concern
        of the call `wants_response`; else None.
    """

    __slots__ = ("code", "details", "error", "response")

    def __init__(self, code: grpc.StatusCode, details: str | None = None, error: BaseException | None = None,
                 response: Any = None) -> None:
        self.code = code
        self.details = details
        self.error = error
        self.response = response  # clients: the response of a call with one response that ended OK

    def __repr__(self) -> str:
        return f"Outcome({self.code.name}, {self.details!r})"


class Scope(Protocol):
    """What a concern opened for one call; ended exactly once with the call's outcome (must not raise)."""

    def end(self, outcome: Outcome) -> None: ...


class OutgoingCall:
    """One outgoing call as client concerns see it.

    `timeout` (seconds, None = no deadline) may be lowered; `add_metadata()` adds request metadata;
    `error_metadata` is added to the trailing metadata of a failed call that lacks it.
    `streaming`: the call has a response stream (Watch and the like), which may rightly last as long as
    the caller wants: concerns must not give it a unary call's default deadline or judge it slow.
    """

    __slots__ = ("error_metadata", "kind", "metadata", "method", "name", "request", "service", "timeout",
                 "wants_response")

    def __init__(self, method: Method | str, kind: CallKind, timeout: float | None, request: Any = None) -> None:
        parsed = method if isinstance(method, Method) else method_of(method)
        self.method = parsed.full  # "/pkg.Service/Method"
        self.service = parsed.service  # "pkg.Service"
        self.name = parsed.name  # "Method"
        self.kind = kind
        self.timeout = timeout
        self.request = request  # the request message, or the iterator of a request stream
        self.wants_response = False  # a concern reads the response of this call (set by the chain)
        self.metadata: list[tuple[str, str]] = []  # added to the request's metadata
        self.error_metadata: list[tuple[str, str]] = []

    @property
    def streaming(self) -> bool:
        return self.kind.response_streaming

    def add_metadata(self, key: str, value: str) -> None:
        self.metadata.append((key, value))


class IncomingCall:
    """One call a server handles, as server concerns see it; `context` is the handler's servicer context."""

    __slots__ = ("context", "kind", "method", "name", "service")

    def __init__(self, method: Method, kind: CallKind, context: Any) -> None:
        self.method = method.full
        self.service = method.service
        self.name = method.name
        self.kind = kind
        self.context = context


class Rejection(Exception):
    """Raised by `ClientConcern.start()` to fail a call locally, without touching the network.

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
    """True when `start()` may block: the asyncio adapter then awaits `start_async()` instead."""

    methods: MethodSelector = ALL_METHODS
    """The methods this concern applies to."""

    wants_response = False
    """True when its scope reads `Outcome.response`: only then do the adapters fetch it."""

    def start(self, call: OutgoingCall) -> Scope | None:
        """Before the call is sent; the scope returned (if any) is ended with the outcome. May raise `Rejection`."""
        return None

    async def start_async(self, call: OutgoingCall) -> Scope | None:
        """`start()` for asyncio channels, for concerns that wait (`waits = True`)."""
        return self.start(call)


class ServerConcern:
    """One server-side policy, run around every handler on the handler's own thread or task."""

    methods: MethodSelector = ALL_METHODS

    def start(self, call: IncomingCall) -> Scope | None:
        """Before the handler; the scope returned (if any) is ended with the status the handler left."""
        return None
