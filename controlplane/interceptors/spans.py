"""Client and server spans as concerns of our own chain, with the instrumentation's conventions.

opentelemetry-instrumentation-grpc adds a gRPC interceptor layer of its own on each side, wraps every
servicer context in a proxy, and (on asyncio) one interceptor object per call kind with tasks of its own;
that machinery, not the span, was most of what tracing cost (see `make bench`). These concerns run inside
the one interceptor our other concerns already share, and make the spans it makes:

- name "/pkg.Service/Method"; kind CLIENT or SERVER; attributes `rpc.system` "grpc", `rpc.service`,
  `rpc.method`, `rpc.grpc.status_code` (0, then the final code); on servers also `rpc.user_agent` and
  `net.peer.ip` / `net.peer.port` / `net.peer.name` from the peer address;
- a client call that ends with a status other than OK has status ERROR; on servers the instrumentation's
  rule: ERROR "StatusCode.X:details" for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and
  DATA_LOSS, UNSET for client errors;
- W3C context (the global propagator) injected into the request metadata and extracted on the server.

Where the instrumentation is wrong we are not: a handler that raises ends with `rpc.grpc.status_code` 2
(UNKNOWN, what the caller gets), not 0, and its exception is recorded once, not twice. Both sides also
carry the trace id back: servers put it in every response's trailing metadata (`x-trace-id`), clients
add it to failed calls that came back without one (`tests/interceptors/test_span_conventions.py` holds
our spans against the instrumentation's).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, format_trace_id

from controlplane.interceptors.call import ClientConcern, IncomingCall, Outcome, OutgoingCall, ServerConcern
from controlplane.interceptors.methods import MethodSelector

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["TRACE_ID_KEY", "ClientSpans", "ClientTraceIds", "ServerSpans", "ServerTraceIds",
           "instrumentation_active", "traced_methods"]

log = logging.getLogger(__name__)

TRACE_ID_KEY = "x-trace-id"
"""Response metadata key carrying the 32-hex-digit trace id of the call."""

SCHEMA_URL = "https://opentelemetry.io/schemas/1.11.0"  # the instrumentation's

# The attribute names, as opentelemetry-semantic-conventions spells them (kept literal: importing the
# incubating module costs start-up time for four strings).
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
RPC_USER_AGENT = "rpc.user_agent"
NET_PEER_IP = "net.peer.ip"
NET_PEER_PORT = "net.peer.port"
NET_PEER_NAME = "net.peer.name"

_OK = grpc.StatusCode.OK
_SERVER_ERRORS = frozenset({
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
})
_SUPPRESS_KEYS = ("suppress_instrumentation", otel_context._SUPPRESS_INSTRUMENTATION_KEY)


def traced_methods(environ: Mapping[str, str] | None = None) -> MethodSelector:
    """What is traced by default: every method but health checks and the services named in
    OTEL_PYTHON_GRPC_EXCLUDED_SERVICES (comma-separated, as the instrumentation reads it)."""
    env = os.environ if environ is None else environ
    excluded = [s.strip() for s in env.get("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", "").split(",") if s.strip()]
    return MethodSelector.excluding("grpc.health.v1.Health", *excluded)


_INSTRUMENTORS = {
    "client": ("GrpcInstrumentorClient", "GrpcAioInstrumentorClient"),
    "server": ("GrpcInstrumentorServer", "GrpcAioInstrumentorServer"),
}
_told: set[str] = set()


def instrumentation_active(side: str) -> bool:
    """Whether opentelemetry-instrumentation-grpc's auto-instrumentation is on for `side` ("client" or
    "server"): then it makes the spans, and ours would double them."""
    module = sys.modules.get("opentelemetry.instrumentation.grpc")
    if module is None:
        return False
    for name in _INSTRUMENTORS[side]:
        instance = getattr(getattr(module, name, None), "_instance", None)
        if instance is not None and getattr(instance, "_is_instrumented_by_opentelemetry", False):
            if side not in _told:
                _told.add(side)
                log.info("OpenTelemetry's gRPC %s instrumentation is on: its spans are used, ours are not made", side)
            return True
    return False


RequestHook = Callable[[Span, Any], None]
ResponseHook = Callable[[Span, Any], None]


def _call_hook(hook: Callable[[Span, Any], None], span: Span, value: Any) -> None:
    try:
        hook(span, value)
    except Exception:
        log.exception("span hook %r failed", hook)


def _suppressed() -> bool:
    # opentelemetry.instrumentation.utils.is_instrumentation_enabled(), without importing the instrumentation.
    return any(otel_context.get_value(key) for key in _SUPPRESS_KEYS)


def _tracer(tracer_provider: TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer("controlplane.interceptors", None, tracer_provider, schema_url=SCHEMA_URL)


class _LowerCaseSetter:
    """gRPC metadata keys must be lower case; propagators (B3, say) may write mixed case."""

    @staticmethod
    def set(carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key.lower()] = value


_SETTER = _LowerCaseSetter()


# --- client -------------------------------------------------------------------------------------------


def _stamp_current_trace_id(call: OutgoingCall) -> None:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        call.error_metadata.append((TRACE_ID_KEY, format_trace_id(span_context.trace_id)))


def _stamp_trailers(context: Any, span_context: Any) -> str | None:
    """Put the trace id of `span_context` in the response's trailing metadata; the id, or None if invalid."""
    if not span_context.is_valid:
        return None
    trace_id = format_trace_id(span_context.trace_id)
    context.set_trailing_metadata(((TRACE_ID_KEY, trace_id),))
    return trace_id


def _keep_trace_id_in_trailers(context: Any, trace_id: str) -> None:
    trailing = context.trailing_metadata() or ()
    if not any(key == TRACE_ID_KEY for key, _ in trailing):  # the handler set trailers of its own
        context.set_trailing_metadata((*tuple(trailing), (TRACE_ID_KEY, trace_id)))


class ClientTraceIds(ClientConcern):
    """A failed call that came back without a trace id gets the one of the current span (whoever made it)."""

    def start(self, call: OutgoingCall) -> None:
        _stamp_current_trace_id(call)


class ClientSpans(ClientConcern):
    """A CLIENT span per call, its context in the request metadata; failed calls carry the trace id.

    request_hook(span, request) runs when the span starts; response_hook(span, response) when a call
    with one response ends OK (as the instrumentation's hooks). When the instrumentation's own
    auto-instrumentation is on, it makes the spans and this concern only stamps trace ids.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, methods: MethodSelector | None = None,
                 request_hook: RequestHook | None = None, response_hook: ResponseHook | None = None) -> None:
        self._tracer = _tracer(tracer_provider)
        self._request_hook = request_hook
        self._response_hook = response_hook
        self.wants_response = response_hook is not None
        if methods is not None:
            self.methods = methods

    def start(self, call: OutgoingCall) -> _ClientSpan | None:
        if _suppressed():
            return None
        if instrumentation_active("client"):
            _stamp_current_trace_id(call)
            return None
        span = self._tracer.start_span(
            call.method,
            kind=SpanKind.CLIENT,
            attributes={RPC_SYSTEM: "grpc", RPC_GRPC_STATUS_CODE: 0, RPC_METHOD: call.name, RPC_SERVICE: call.service},
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, trace.set_span_in_context(span), setter=_SETTER)  # type: ignore[arg-type]
        call.metadata.extend(carrier.items())
        span_context = span.get_span_context()
        if span_context.is_valid:
            call.error_metadata.append((TRACE_ID_KEY, format_trace_id(span_context.trace_id)))
        if self._request_hook is not None:
            _call_hook(self._request_hook, span, call.request)
        return _ClientSpan(span, self._response_hook)


class _ClientSpan:
    __slots__ = ("_response_hook", "_span")

    def __init__(self, span: Span, response_hook: ResponseHook | None) -> None:
        self._span = span
        self._response_hook = response_hook

    def end(self, outcome: Outcome) -> None:
        span = self._span
        code = outcome.code
        if code is not _OK:
            span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
            span.set_status(Status(StatusCode.ERROR, outcome.details))
        elif self._response_hook is not None and outcome.response is not None:
            _call_hook(self._response_hook, span, outcome.response)
        span.end()


# --- server -------------------------------------------------------------------------------------------


class ServerTraceIds(ServerConcern):
    """The trace id of the current span (whoever made it) in the trailing metadata of every response."""

    def start(self, call: IncomingCall) -> _TraceIdStamp | None:
        trace_id = _stamp_trailers(call.context, trace.get_current_span().get_span_context())
        return _TraceIdStamp(trace_id, call.context) if trace_id is not None else None


class _TraceIdStamp:
    __slots__ = ("_context", "_trace_id")

    def __init__(self, trace_id: str, context: Any) -> None:
        self._trace_id = trace_id
        self._context = context

    def end(self, outcome: Outcome) -> None:
        _keep_trace_id_in_trailers(self._context, self._trace_id)


_SERVER_TRACE_IDS = ServerTraceIds()


class ServerSpans(ServerConcern):
    """A SERVER span per handled call, child of the caller's; the trace id in every response's trailers.

    When the instrumentation's own server auto-instrumentation is on, it makes the spans (its interceptor
    runs first) and this concern only stamps trace ids.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, methods: MethodSelector | None = None) -> None:
        self._tracer = _tracer(tracer_provider)
        self.methods = methods if methods is not None else traced_methods()
        self._peers: dict[str, dict[str, str]] = {}

    def start(self, call: IncomingCall) -> _ServerSpan | _TraceIdStamp | None:
        if _suppressed():
            return None
        if instrumentation_active("server"):
            return _SERVER_TRACE_IDS.start(call)
        context = call.context
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        parent = propagate.extract(metadata) if metadata else None
        attributes: dict[str, Any] = {
            RPC_SYSTEM: "grpc",
            RPC_GRPC_STATUS_CODE: 0,
            RPC_METHOD: call.name,
            RPC_SERVICE: call.service,
        }
        user_agent = metadata.get("user-agent")
        if user_agent is not None:
            attributes[RPC_USER_AGENT] = user_agent
        attributes.update(self._peer_attributes(context.peer()))
        span = self._tracer.start_span(call.method, parent, SpanKind.SERVER, attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _ServerSpan(span, token, _stamp_trailers(context, span.get_span_context()), context)

    def _peer_attributes(self, peer: str) -> dict[str, str]:
        """net.peer.* as the instrumentation derives them ("ipv4:127.0.0.1:57284", "ipv6:[::1]:57284")."""
        known = self._peers.get(peer)
        if known is not None:
            return known
        attributes: dict[str, str] = {}
        if not peer.startswith("unix:"):
            try:
                ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
                ip = unquote(ip)
                attributes = {NET_PEER_IP: ip, NET_PEER_PORT: port}
                if ip in ("[::1]", "127.0.0.1"):
                    attributes[NET_PEER_NAME] = "localhost"
            except (IndexError, ValueError):
                log.warning("cannot parse the peer address %r", peer)
        if len(self._peers) < 10_000:
            self._peers[peer] = attributes
        return attributes


class _ServerSpan:
    __slots__ = ("_context", "_span", "_token", "_trace_id")

    def __init__(self, span: Span, token: object, trace_id: str | None, context: Any) -> None:
        self._span = span
        self._token = token
        self._trace_id = trace_id
        self._context = context

    def end(self, outcome: Outcome) -> None:
        span = self._span
        code = outcome.code
        if code is not _OK:
            span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
            if code in _SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, f"{code}:{outcome.details or code.value[1]}"))
        if outcome.error is not None:
            span.record_exception(outcome.error)
        if self._trace_id is not None:
            _keep_trace_id_in_trailers(self._context, self._trace_id)
        span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]
