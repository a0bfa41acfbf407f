"""Tracing with OpenTelemetry: spans, W3C propagation, exporters, and what the instrumentation leaves out.

Spans follow opentelemetry-instrumentation-grpc's conventions (client and server, sync and asyncio; made by
`spans.ClientSpans` / `spans.ServerSpans` inside our one interceptor); W3C trace context travels in the
request metadata, so a chain of calls A -> B -> C is one trace. This module adds:

- the trace id in the response: servers put it in the trailing metadata (`x-trace-id`), also on errors, and
  clients add it to failed calls that came back without one (server unreachable, call refused locally),
  so whoever holds a failed call can find its trace (`trace_id_of(error)`);
- `TraceContextFilter`, a logging filter that puts trace_id and span_id on every log record;
- `setup_tracing(service_name)`: exporters from the standard OTEL_* variables (OTLP when
  OTEL_EXPORTER_OTLP_ENDPOINT is set); with nothing configured, spans go to a JSON-lines file,
  `$CONTROLPLANE_TRACE_DIR/<service>.jsonl` (default `.traces/<service>.jsonl`), one span per line.

Only opentelemetry-api is imported up front; the SDK and the instrumentation load when first used.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import grpc
from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id

from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._server import AioServerInterceptor, ServerInterceptor
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.spans import TRACE_ID_KEY, ClientSpans, ServerSpans
from controlplane.text import decimal

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "TRACE_ID_KEY",
    "TraceContextFilter",
    "TracingSettings",
    "aio_client_interceptors",
    "aio_server_interceptors",
    "client_interceptors",
    "current_trace_id",
    "server_interceptors",
    "setup_tracing",
    "trace_id_in",
    "trace_id_of",
]

log = logging.getLogger(__name__)

Exporter = Literal["otlp", "jsonl", "console", "none"]


def current_trace_id() -> str | None:
    """The trace id of the current span as 32 hex digits, or None outside a (recorded) trace."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def trace_id_in(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The trace id in a metadata sequence, e.g. `trace_id_in(await aio_call.trailing_metadata())`."""
    for key, value in metadata or ():
        if key == TRACE_ID_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def trace_id_of(call_or_error: Any) -> str | None:
    """The trace id a finished call or an RpcError carries (trailing, then initial metadata).

    Works for sync calls and errors, for `grpc.aio.AioRpcError`, and for a grpc.aio call that has ended
    (after `await call`, its metadata is already there); for one still running, await
    `trace_id_in(await call.trailing_metadata())` instead (asking it here raises TypeError).
    """
    for getter in ("trailing_metadata", "initial_metadata"):
        read = getattr(call_or_error, getter, None)
        if read is None:
            continue
        metadata = read()
        if inspect.isawaitable(metadata):
            metadata = _ready(metadata)
        found = trace_id_in(metadata)
        if found:
            return found
    return None


def _ready(awaitable: Any) -> Any:
    """The value of an awaitable that needs no waiting (a grpc.aio call's metadata once the call ended)."""
    coroutine = awaitable if inspect.iscoroutine(awaitable) else awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise TypeError("this grpc.aio call is still running: use trace_id_in(await call.trailing_metadata())")


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` (hex, or "-" outside a trace) to every record it sees.

    Attach it to a handler so records of every logger get the fields:
    `handler.addFilter(TraceContextFilter())`, then use `%(trace_id)s` in the format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format_trace_id(context.trace_id)
            record.span_id = format_span_id(context.span_id)
        else:
            record.trace_id = record.span_id = "-"
        return True


# --- the instrumentation's own interceptors (imported on first use) ---------------------------------------
# Our stack makes its spans with `spans.ClientSpans` / `spans.ServerSpans` (same conventions, a fraction of
# the cost); these are opentelemetry-instrumentation-grpc's interceptors, for apps that want them as they
# are, and for the test that holds our spans against theirs.


def otel_client_interceptor(
    tracer_provider: TracerProvider | None = None,
) -> grpc.UnaryUnaryClientInterceptor:
    """The instrumentation's client spans for a sync channel (global tracer provider unless one is given)."""
    from controlplane.interceptors._otel_sync import OpenTelemetryClientInterceptor

    return OpenTelemetryClientInterceptor(tracer_provider)


def otel_aio_client_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """The instrumentation's client spans for a grpc.aio channel."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors as otel

    return list(otel(tracer_provider=tracer_provider))


def _not_health_checks() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.health_check())


def otel_server_interceptor(tracer_provider: TracerProvider | None = None) -> grpc.ServerInterceptor:
    """The instrumentation's server spans for a sync server (grpc.health.v1 calls are not traced)."""
    from opentelemetry.instrumentation.grpc import server_interceptor as otel

    return otel(tracer_provider=tracer_provider, filter_=_not_health_checks())


def otel_aio_server_interceptor(tracer_provider: TracerProvider | None = None) -> grpc.aio.ServerInterceptor:
    """The instrumentation's server spans for a grpc.aio server (grpc.health.v1 calls are not traced)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor as otel

    return otel(tracer_provider=tracer_provider, filter_=_not_health_checks())


# --- tracing alone ----------------------------------------------------------------------------------------


def client_interceptors(tracer_provider: TracerProvider | None = None) -> list[Any]:
    """Tracing alone for a sync channel: `grpc.intercept_channel(channel, *client_interceptors())`."""
    return [ClientInterceptor([ClientSpans(tracer_provider)])]


def aio_client_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """Tracing alone for a grpc.aio channel: `grpc.aio.insecure_channel(t, interceptors=...)`."""
    return aio_client_chain([ClientSpans(tracer_provider)])


def server_interceptors(tracer_provider: TracerProvider | None = None) -> list[grpc.ServerInterceptor]:
    """Tracing alone for a sync server: `grpc.server(pool, interceptors=server_interceptors())`."""
    return [ServerInterceptor([ServerSpans(tracer_provider)])]


def aio_server_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """Tracing alone for a grpc.aio server: `grpc.aio.server(interceptors=aio_server_interceptors())`."""
    return [AioServerInterceptor([ServerSpans(tracer_provider)])]


# --- setup -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go, read once from the environment by `from_env()`.

    exporter: "otlp" (endpoint, headers and TLS from the OTEL_EXPORTER_OTLP_* variables),
        "jsonl" (a local file), "console" (stdout) or "none".
    trace_dir: directory of the JSON-lines files, one `<service>.jsonl` per service.
    protocol: OTLP over "grpc" or "http/protobuf" (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then
        OTEL_EXPORTER_OTLP_PROTOCOL).
    max_file_bytes, backup_files: a span file is rotated at this size, keeping this many old ones
        (CONTROLPLANE_TRACE_MAX_BYTES, CONTROLPLANE_TRACE_BACKUPS).
    """

    exporter: Exporter = "jsonl"
    trace_dir: str = ".traces"
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    max_file_bytes: int = 50 * 2**20
    backup_files: int = 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TracingSettings:
        """OTEL_TRACES_EXPORTER if set; else "otlp" when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set; else
        "jsonl" into CONTROLPLANE_TRACE_DIR (default ".traces")."""
        env = os.environ if environ is None else environ
        choice = env.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
        if not choice:
            otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            choice = "otlp" if otlp else "jsonl"
        if choice not in ("otlp", "jsonl", "console", "none"):
            raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r} is not supported; use otlp, jsonl, console or none")
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "grpc").strip().lower()
        if protocol not in ("grpc", "http/protobuf"):
            raise ValueError(f"OTLP protocol {protocol!r} is not supported here; use grpc or http/protobuf")
        return cls(
            exporter=choice,  # type: ignore[arg-type]
            trace_dir=env.get("CONTROLPLANE_TRACE_DIR") or ".traces",
            protocol=protocol,  # type: ignore[arg-type]
            max_file_bytes=_positive_int(env, "CONTROLPLANE_TRACE_MAX_BYTES", 50 * 2**20),
            backup_files=_positive_int(env, "CONTROLPLANE_TRACE_BACKUPS", 3, minimum=0),
        )

    def trace_file(self, service_name: str) -> Path:
        """The JSON-lines file of `service_name`."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in service_name) or "service"
        return Path(self.trace_dir) / f"{safe}.jsonl"


def _positive_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if not raw:
        return default
    value = decimal(raw.strip(), 18)  # ASCII digits only: int() also reads "٣" as 3
    if value is None or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {raw[:40]!r}")
    return value


def app_tracer_provider() -> Any | None:
    """The application's own global TracerProvider, if it set one (not OpenTelemetry's default proxy)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider


def setup_tracing(
    service_name: str,
    *,
    trace_file: str | os.PathLike[str] | None = None,
    settings: TracingSettings | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Create the tracer provider of this process and, by default, make it the global one.

    service_name: the `service.name` of every span. trace_file: the JSON-lines file when exporting to a
    file (default: `settings.trace_file(service_name)`). settings: default `TracingSettings.from_env()`.
    Spans are exported in batches; the provider flushes them at exit (or call `provider.force_flush()`).

    When the application already set a global TracerProvider of its own, that one is used and returned
    (its exporters and sampler apply; a log line says so): spans are never sent to a second provider.
    An unwritable span folder fails here, with `TraceFileError`, not later with lost spans.
    """
    from controlplane.interceptors._export import build_provider

    existing = app_tracer_provider() if set_global else None
    if existing is not None:
        log.info("tracing %s: using the application's own TracerProvider (%s); its exporters apply",
                 service_name, type(existing).__name__)
        return existing  # type: ignore[no-any-return]
    settings = settings or TracingSettings.from_env()
    path = Path(trace_file) if trace_file is not None else settings.trace_file(service_name)
    provider = build_provider(service_name, settings.exporter, path, protocol=settings.protocol,
                              max_bytes=settings.max_file_bytes, backups=settings.backup_files)
    if set_global:
        trace.set_tracer_provider(provider)
    log.info(
        "tracing %s: exporter %s%s",
        service_name,
        settings.exporter,
        f" -> {path}" if settings.exporter == "jsonl" else (f" ({settings.protocol})" if settings.exporter == "otlp"
                                                             else ""),
    )
    return provider
