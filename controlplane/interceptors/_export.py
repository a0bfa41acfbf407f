"""Span export for `setup_tracing`: OTLP, console, nothing, or JSON lines in a local file.

Imports opentelemetry-sdk, so `tracing.setup_tracing` imports this module only when it is called.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one line of JSON (OpenTelemetry's own span JSON)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


MAX_ATTRIBUTE_LENGTH = 2048


def _length_limit_set() -> bool:
    return any(os.environ.get(name) for name in ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                                                 "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"))


def build_provider(service_name: str, exporter: str, trace_file: Path) -> TracerProvider:
    """A tracer provider for `service_name` that exports through `exporter` ("otlp", "jsonl", ...)."""
    # A span keeps at most MAX_ATTRIBUTE_LENGTH characters of any attribute or event value (an error text
    # that echoes a client's request must not make one call write megabytes of traces), unless the
    # standard OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT / OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT say otherwise.
    limits = SpanLimits(max_attribute_length=None if _length_limit_set() else MAX_ATTRIBUTE_LENGTH)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}), span_limits=limits)
    span_exporter: SpanExporter | None
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()  # endpoint, headers, TLS: from the OTEL_EXPORTER_OTLP_* variables
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter(service_name=service_name)
    elif exporter == "jsonl":
        span_exporter = JsonLinesSpanExporter(trace_file)
    else:
        span_exporter = None
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider
