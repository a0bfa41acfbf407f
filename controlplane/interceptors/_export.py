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


class TraceFileError(OSError):
    """The span file cannot be written (its folder is read-only, say): setup_tracing fails with this, at once."""


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one line of JSON (OpenTelemetry's own span JSON).

    Bounded: once the file holds `max_bytes`, it is rotated (`x.jsonl` -> `x.jsonl.1` -> ... up to
    `backups` old files; the oldest is dropped), so a long-running service never fills its disk.
    """

    def __init__(self, path: str | Path, max_bytes: int = 50 * 2**20, backups: int = 3) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise TraceFileError(
                exc.errno, f"cannot write spans to {self.path} ({exc.strerror}); set CONTROLPLANE_TRACE_DIR to a "
                f"writable folder, or OTEL_TRACES_EXPORTER=otlp|console|none") from exc
        self._lock = threading.Lock()
        self._size = self.path.stat().st_size

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                if self._size and self._size + len(lines) > self.max_bytes:
                    self._rotate()
                self._file.write(lines)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
            self._size += len(lines)
        return SpanExportResult.SUCCESS

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        for number in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            newer = self.path.with_name(f"{self.path.name}.{number - 1}") if number > 1 else self.path
            if number == self.backups:
                older.unlink(missing_ok=True)
            if newer.exists():
                newer.rename(older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0

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


def build_provider(service_name: str, exporter: str, trace_file: Path, *, protocol: str = "grpc",
                   max_bytes: int = 50 * 2**20, backups: int = 3) -> TracerProvider:
    """A tracer provider for `service_name` that exports through `exporter` ("otlp", "jsonl", ...);
    `protocol`: OTLP's "grpc" or "http/protobuf"."""
    # A span keeps at most MAX_ATTRIBUTE_LENGTH characters of any attribute or event value (an error text
    # that echoes a client's request must not make one call write megabytes of traces), unless the
    # standard OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT / OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT say otherwise.
    limits = SpanLimits(max_attribute_length=None if _length_limit_set() else MAX_ATTRIBUTE_LENGTH)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}), span_limits=limits)
    span_exporter: SpanExporter | None
    if exporter == "otlp" and protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        span_exporter = HttpExporter()  # endpoint, headers: from the OTEL_EXPORTER_OTLP_* variables
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()  # endpoint, headers, TLS: from the OTEL_EXPORTER_OTLP_* variables
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter(service_name=service_name)
    elif exporter == "jsonl":
        span_exporter = JsonLinesSpanExporter(trace_file, max_bytes, backups)
    else:
        span_exporter = None
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider
