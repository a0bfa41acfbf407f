"""Tracing: one trace across three hops, the trace id in responses (also on errors), logs, exporters.

Spans go to an in-memory exporter of a tracer provider made per test; the global provider is never set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_trace_id

from controlplane.interceptors import (
    TRACE_ID_KEY,
    BreakerPolicy,
    ClientPolicy,
    TraceContextFilter,
    TracingSettings,
    aio_client_interceptors,
    aio_server_interceptors,
    client_interceptors,
    server_interceptors,
    setup_tracing,
    trace_id_in,
    trace_id_of,
)

from .servers import (
    UNARY,
    Behavior,
    aio_served,
    aio_server,
    dead_address,
    sync_channel,
    sync_served,
    sync_server,
)

Spans = tuple[TracerProvider, InMemorySpanExporter]


def one_chain(finished: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans as one parent -> child chain, checking that they form exactly one."""
    assert len({s.context.trace_id for s in finished}) == 1, "spans belong to more than one trace"
    (root,) = [s for s in finished if s.parent is None]
    chain = [root]
    while children := [s for s in finished if s.parent is not None and s.parent.span_id == chain[-1].context.span_id]:
        (child,) = children
        chain.append(child)
    assert len(chain) == len(finished)
    return chain


def hex_trace_id(span: ReadableSpan) -> str:
    return format_trace_id(span.context.trace_id)


def test_one_trace_spans_three_hops_and_the_caller_gets_its_id(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans
    b = Behavior()
    with (
        sync_server(behavior, server_interceptors(tracer_provider=provider)) as c_address,
        sync_channel(c_address, client_interceptors(tracer_provider=provider)) as to_c,
    ):
        b.on_call = lambda request, context: to_c.unary_unary(UNARY)(request)
        with sync_served(
            b, client_interceptors(tracer_provider=provider), server_interceptors(tracer_provider=provider)
        ) as to_b:
            response, call = to_b.unary_unary(UNARY).with_call(b"hello", timeout=10)
    assert response == b"hello"
    chain = one_chain(exporter.get_finished_spans())
    assert [s.kind for s in chain] == [SpanKind.CLIENT, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.SERVER]
    assert {s.name for s in chain} == {UNARY}
    assert trace_id_of(call) == hex_trace_id(chain[0])


def test_aio_one_trace_spans_three_hops_and_the_caller_gets_its_id(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans
    b = Behavior()

    async def main() -> str | None:
        async with (
            aio_server(behavior, aio_server_interceptors(tracer_provider=provider)) as c_address,
            grpc.aio.insecure_channel(
                c_address, interceptors=aio_client_interceptors(tracer_provider=provider)
            ) as to_c,
        ):
            b.on_call = lambda request, context: to_c.unary_unary(UNARY)(request)
            async with aio_served(
                b, aio_client_interceptors(tracer_provider=provider), aio_server_interceptors(tracer_provider=provider)
            ) as to_b:
                call = to_b.unary_unary(UNARY)(b"hello", timeout=10)
                assert await call == b"hello"
                return trace_id_in(await call.trailing_metadata())

    returned = asyncio.run(main())
    chain = one_chain(exporter.get_finished_spans())
    assert [s.kind for s in chain] == [SpanKind.CLIENT, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.SERVER]
    assert returned == hex_trace_id(chain[0])


def test_sync_client_and_aio_server_share_one_trace(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans

    async def main() -> None:
        async with aio_server(behavior, aio_server_interceptors(tracer_provider=provider)) as address:
            with sync_channel(address, client_interceptors(tracer_provider=provider)) as channel:
                await asyncio.to_thread(channel.unary_unary(UNARY), b"x", timeout=10)

    asyncio.run(main())
    assert [s.kind for s in one_chain(exporter.get_finished_spans())] == [SpanKind.CLIENT, SpanKind.SERVER]


def test_failed_call_carries_the_trace_id_of_the_server_span(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans
    behavior.fail_with = grpc.StatusCode.INTERNAL
    with (
        sync_served(
            behavior, client_interceptors(tracer_provider=provider), server_interceptors(tracer_provider=provider)
        ) as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        channel.unary_unary(UNARY)(b"x", timeout=10)
    server_span = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert error.value.code() is grpc.StatusCode.INTERNAL
    assert trace_id_of(error.value) == hex_trace_id(server_span)
    assert [k for k, _ in error.value.trailing_metadata()].count(TRACE_ID_KEY) == 1


def test_aio_failed_call_carries_the_trace_id_of_the_server_span(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans
    behavior.fail_with = grpc.StatusCode.NOT_FOUND

    async def main() -> grpc.aio.AioRpcError:
        async with aio_served(
            behavior,
            aio_client_interceptors(tracer_provider=provider),
            aio_server_interceptors(tracer_provider=provider),
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await channel.unary_unary(UNARY)(b"x", timeout=10)
            return error.value

    error = asyncio.run(main())
    server_span = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert trace_id_of(error) == hex_trace_id(server_span)


def test_handler_trailing_metadata_is_kept_next_to_the_trace_id(spans: Spans, behavior: Behavior) -> None:
    provider, _ = spans

    def answer(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata((("x-app", "kept"),))
        return request

    behavior.on_call = answer
    with sync_served(behavior, server=server_interceptors(tracer_provider=provider)) as channel:
        _, call = channel.unary_unary(UNARY).with_call(b"x", timeout=10)
    metadata = dict(call.trailing_metadata())
    assert metadata["x-app"] == "kept"
    assert len(metadata[TRACE_ID_KEY]) == 32


def test_call_to_a_dead_server_carries_the_trace_id_of_the_client_span(spans: Spans) -> None:
    provider, exporter = spans
    with (
        sync_channel(dead_address(), client_interceptors(tracer_provider=provider)) as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        channel.unary_unary(UNARY)(b"x", timeout=10)
    (client_span,) = exporter.get_finished_spans()
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    assert trace_id_of(error.value) == hex_trace_id(client_span)
    assert client_span.status.status_code is StatusCode.ERROR


def test_aio_call_to_a_dead_server_carries_the_trace_id_of_the_client_span(spans: Spans) -> None:
    provider, exporter = spans

    async def main() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(
            dead_address(), interceptors=aio_client_interceptors(tracer_provider=provider)
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await channel.unary_unary(UNARY)(b"x", timeout=10)
            return error.value

    error = asyncio.run(main())
    (client_span,) = exporter.get_finished_spans()
    assert trace_id_of(error) == hex_trace_id(client_span)


def test_call_refused_by_the_breaker_is_traced_and_carries_the_trace_id(spans: Spans) -> None:
    provider, exporter = spans
    policy = ClientPolicy(breaker=BreakerPolicy(minimum_calls=1, window_size=1))
    with sync_channel(dead_address(), client_interceptors(policy, tracer_provider=provider)) as channel:
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(UNARY)(b"x", timeout=10)
        exporter.clear()
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(UNARY)(b"x", timeout=10)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert trace_id_of(refused.value) == hex_trace_id(span)
    assert dict(refused.value.trailing_metadata())["x-breaker-state"] == "open"


def test_server_streams_are_traced_until_they_end(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans
    with sync_served(
        behavior, client_interceptors(tracer_provider=provider), server_interceptors(tracer_provider=provider)
    ) as channel:
        stream = channel.unary_stream("/test.Echo/ServerStream")(b"s", timeout=10)
        assert list(stream) == [b"s", b"s"]
        assert stream.code() is grpc.StatusCode.OK
        trace_id = trace_id_of(stream)
    assert [s.kind for s in one_chain(exporter.get_finished_spans())] == [SpanKind.CLIENT, SpanKind.SERVER]
    assert trace_id == hex_trace_id(exporter.get_finished_spans()[0])


def test_log_records_written_while_handling_a_call_carry_its_trace_and_span_ids(
    spans: Spans, behavior: Behavior
) -> None:
    provider, exporter = spans
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("tests.interceptors.handler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    behavior.on_call = lambda request, context: logger.info("handling %s", request)
    try:
        with sync_served(
            behavior, client_interceptors(tracer_provider=provider), server_interceptors(tracer_provider=provider)
        ) as channel:
            channel.unary_unary(UNARY)(b"x", timeout=10)
        logger.info("outside any call")
    finally:
        logger.removeHandler(handler)
    server_span = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    inside, outside = records
    assert inside.trace_id == hex_trace_id(server_span)  # type: ignore[attr-defined]
    assert inside.span_id == f"{server_span.context.span_id:016x}"  # type: ignore[attr-defined]
    assert (outside.trace_id, outside.span_id) == ("-", "-")  # type: ignore[attr-defined]


# --- setup_tracing and exporters ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw"), [
    ("CONTROLPLANE_TRACE_MAX_BYTES", "\u0663"), ("CONTROLPLANE_TRACE_MAX_BYTES", "0"),
    ("CONTROLPLANE_TRACE_BACKUPS", "-1"), ("CONTROLPLANE_TRACE_BACKUPS", "x"),
])
def test_span_file_sizes_are_whole_numbers_in_ascii_digits(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a whole number"):
        TracingSettings.from_env({name: raw})
    assert TracingSettings.from_env({"CONTROLPLANE_TRACE_MAX_BYTES": " 4096 ", "CONTROLPLANE_TRACE_BACKUPS": "0"}
                                    ) == TracingSettings(max_file_bytes=4096, backup_files=0)


def test_tracing_settings_follow_the_otel_environment() -> None:
    assert TracingSettings.from_env({}) == TracingSettings("jsonl", ".traces")
    assert TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}).exporter == "otlp"
    assert TracingSettings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:4317"}).exporter == "otlp"
    assert (
        TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}).exporter
        == "console"
    )
    settings = TracingSettings.from_env({"CONTROLPLANE_TRACE_DIR": "/var/traces"})
    assert settings.trace_file("orders/v1") == Path("/var/traces/orders_v1.jsonl")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_without_a_collector_spans_go_to_a_json_lines_file(tmp_path: Path) -> None:
    settings = TracingSettings(exporter="jsonl", trace_dir=str(tmp_path / "traces"))
    provider = setup_tracing("orders", settings=settings, set_global=False)
    try:
        tracer = provider.get_tracer("test")
        for name in ("first", "second"):
            with tracer.start_as_current_span(name):
                pass
        provider.force_flush()
    finally:
        provider.shutdown()
    lines = (tmp_path / "traces" / "orders.jsonl").read_text().splitlines()
    spans = [json.loads(line) for line in lines]
    assert [s["name"] for s in spans] == ["first", "second"]
    assert spans[0]["resource"]["attributes"]["service.name"] == "orders"


@pytest.fixture
def collector() -> Iterator[tuple[str, list[str]]]:
    """A stand-in OTLP/gRPC collector on loopback that records the names of the spans it receives."""
    received: list[str] = []

    def export(request: bytes, context: Any) -> bytes:
        message = ExportTraceServiceRequest.FromString(request)
        received.extend(s.name for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans)
        return b""  # an empty ExportTraceServiceResponse

    behavior = Behavior()
    behavior.on_call = export
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(None)


def test_spans_go_to_the_otlp_endpoint_from_the_environment(
    collector: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    provider = setup_tracing("orders", set_global=False)
    try:
        with provider.get_tracer("test").start_as_current_span("sent over otlp"):
            pass
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
    assert received == ["sent over otlp"]


def test_health_checks_are_not_traced_on_the_server(spans: Spans) -> None:
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    provider, exporter = spans
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), interceptors=server_interceptors(tracer_provider=provider)
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        provider.force_flush()
        assert [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER] == []
    finally:
        server.stop(None)
