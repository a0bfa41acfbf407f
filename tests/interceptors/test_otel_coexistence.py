"""OpenTelemetry that coexists with an app's own: its provider, its auto-instrumentation, its variables.

What sets process-wide OpenTelemetry state (a global provider, auto-instrumentation) runs in a child
process, so no test leaves it behind for the others.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controlplane.interceptors import (
    TracingSettings,
    aio_client_interceptors,
    aio_server_interceptors,
    client_interceptors,
    server_interceptors,
    setup_tracing,
    trace_id_of,
)
from controlplane.interceptors._export import JsonLinesSpanExporter, TraceFileError, build_provider
from tests.helpers import ROOT

from .servers import UNARY, Behavior, aio_served, dead_address, sync_channel, sync_served


def in_child(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_setup_tracing_uses_the_apps_own_provider_and_says_so() -> None:
    out = in_child("""
        import logging
        logging.basicConfig(level=logging.INFO)
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from controlplane.interceptors import setup_tracing
        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        assert setup_tracing("orders") is mine
        print("kept")
    """)
    assert "kept" in out and "using the application's own TracerProvider" in out


def test_with_the_instrumentations_auto_instrumentation_on_each_call_has_one_client_and_one_server_span() -> None:
    out = in_child("""
        from concurrent import futures
        import grpc
        from opentelemetry import trace
        from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient, GrpcInstrumentorServer
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from controlplane.interceptors import client_interceptors, server_interceptors, trace_id_of
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        GrpcInstrumentorServer().instrument()
        GrpcInstrumentorClient().instrument()
        handler = grpc.method_handlers_generic_handler("t.E", {"U": grpc.unary_unary_rpc_method_handler(
            lambda request, context: request)})
        server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=server_interceptors())
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{port}"), *client_interceptors())
        response, call = channel.unary_unary("/t.E/U").with_call(b"x", timeout=10)
        server.stop(None)
        spans = exporter.get_finished_spans()
        print(sorted(s.kind.name for s in spans), trace_id_of(call) == format(spans[0].context.trace_id, "032x"))
    """)
    assert "['CLIENT', 'SERVER'] True" in out


def test_without_our_spans_a_failed_call_still_carries_the_apps_trace_id() -> None:
    provider = TracerProvider()
    channel = sync_channel(dead_address(), client_interceptors(tracing=False))
    with provider.get_tracer("app").start_as_current_span("checkout") as span, pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(UNARY)(b"x", timeout=1)
    assert trace_id_of(error.value) == format(span.get_span_context().trace_id, "032x")


def test_trace_id_of_reads_a_successful_asyncio_call(behavior: Behavior) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def scenario() -> str | None:
        async with aio_served(behavior, aio_client_interceptors(tracer_provider=provider),
                              aio_server_interceptors(tracer_provider=provider)) as channel:
            call = channel.unary_unary(UNARY)(b"x", timeout=10)
            await call
            return trace_id_of(call)

    found = asyncio.run(scenario())
    assert found == format(exporter.get_finished_spans()[0].context.trace_id, "032x")


def test_request_and_response_hooks_see_the_span_and_the_messages(behavior: Behavior) -> None:
    seen: list[tuple[str, Any]] = []
    provider = TracerProvider()
    interceptors = client_interceptors(
        tracer_provider=provider,
        request_hook=lambda span, request: seen.append(("request", request)),
        response_hook=lambda span, response: (span.set_attribute("app.size", len(response)),
                                              seen.append(("response", response))),
    )
    with sync_served(behavior, interceptors, server_interceptors(tracer_provider=provider)) as channel:
        channel.unary_unary(UNARY)(b"abc", timeout=10)
    assert seen == [("request", b"abc"), ("response", b"abc")]


def test_the_otlp_protocol_variable_picks_the_http_exporter(tmp_path: Path) -> None:
    settings = TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                                         "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert (settings.exporter, settings.protocol) == ("otlp", "http/protobuf")
    provider = build_provider("orders", settings.exporter, tmp_path / "x.jsonl", protocol=settings.protocol)
    (processor,) = provider._active_span_processor._span_processors
    assert type(processor.span_exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    provider.shutdown()
    with pytest.raises(ValueError, match="http/json"):
        TracingSettings.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_span_files_are_rotated_at_their_size_keeping_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    exporter = JsonLinesSpanExporter(path, max_bytes=3000, backups=2)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for _ in range(40):
        tracer.start_span("work").end()
    provider.shutdown()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["orders.jsonl", "orders.jsonl.1", "orders.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 3000 for name in files)


def test_an_unwritable_span_folder_fails_setup_with_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = TracingSettings(exporter="jsonl", trace_dir=str(blocker / "traces"))
    with pytest.raises(TraceFileError, match="CONTROLPLANE_TRACE_DIR"):
        setup_tracing("orders", settings=settings, set_global=False)
