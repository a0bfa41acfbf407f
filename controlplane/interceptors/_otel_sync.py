"""OpenTelemetry's sync gRPC client interceptor, made usable with `grpc.intercept_channel`.

opentelemetry-instrumentation-grpc writes its sync client interceptor against its own `grpcext` API, which
plain `grpc.intercept_channel` does not accept. This adapter translates the call, nothing more: spans,
attributes and W3C context injection stay OpenTelemetry's. Imported lazily (it pulls in the instrumentation).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc
from opentelemetry.instrumentation.grpc import client_interceptor as _otel_client_interceptor

from controlplane.interceptors._sync_client import replace_details


class _UnaryInfo(NamedTuple):
    full_method: str
    timeout: float | None


class _StreamInfo(NamedTuple):
    full_method: str
    is_client_stream: bool
    is_server_stream: bool
    timeout: float | None


class OpenTelemetryClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """A client span per call, its context injected into the request metadata (W3C `traceparent`)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._otel = _otel_client_interceptor(tracer_provider=tracer_provider)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        def invoker(request: Any, metadata: Any) -> Any:
            return continuation(replace_details(client_call_details, metadata=metadata), request)

        info = _UnaryInfo(client_call_details.method, client_call_details.timeout)
        return self._otel.intercept_unary(request, client_call_details.metadata, info, invoker)

    def _intercept_stream(self, continuation: Any, client_call_details: Any, request_or_iterator: Any) -> Any:
        def invoker(request_or_iterator: Any, metadata: Any) -> Any:
            return continuation(replace_details(client_call_details, metadata=metadata), request_or_iterator)

        # Described as bidirectional on purpose: OpenTelemetry's server-streaming path returns a bare
        # generator (no code(), cancel(), trailing_metadata()); its general path returns the grpc call
        # itself and ends the span when the call completes, which is what a caller of a stream needs.
        info = _StreamInfo(client_call_details.method, True, True, client_call_details.timeout)
        return self._otel.intercept_stream(request_or_iterator, client_call_details.metadata, info, invoker)

    intercept_unary_stream = _intercept_stream
    intercept_stream_unary = _intercept_stream
    intercept_stream_stream = _intercept_stream
