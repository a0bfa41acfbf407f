"""The whole stack on every kind of call, sync and asyncio, and the runnable example."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from controlplane.interceptors import (
    BreakerPolicy,
    BreakerRegistry,
    BulkheadPolicy,
    ClientPolicy,
    State,
    aio_client_interceptors,
    aio_server_interceptors,
    client_interceptors,
    server_interceptors,
    trace_id_in,
    trace_id_of,
)

from .servers import (
    BIDI,
    CLIENT_STREAM,
    SERVER_STREAM,
    SERVICE,
    UNARY,
    Behavior,
    aio_eventually,
    aio_served,
    dead_address,
    eventually,
    sync_channel,
    sync_served,
)

REPO = Path(__file__).resolve().parents[2]
POLICY = ClientPolicy(bulkhead=BulkheadPolicy(max_concurrent=10))
Spans = tuple[TracerProvider, InMemorySpanExporter]


def traces(exporter: InMemorySpanExporter) -> list[list[str]]:
    """The kinds of the finished spans, grouped per trace."""
    by_trace: dict[int, list[str]] = {}
    for span in exporter.get_finished_spans():
        by_trace.setdefault(span.context.trace_id, []).append(span.kind.name)
    return [sorted(kinds) for kinds in by_trace.values()]


def test_every_kind_of_call_goes_through_the_whole_stack(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans
    client = client_interceptors(POLICY, tracer_provider=provider)
    with sync_served(behavior, client, server_interceptors(tracer_provider=provider)) as channel:
        response, call = channel.unary_unary(UNARY).with_call(b"u", timeout=10)
        stream = channel.unary_stream(SERVER_STREAM)(b"s", timeout=10)
        streamed = list(stream)
        gathered, upload = channel.stream_unary(CLIENT_STREAM).with_call(iter([b"a", b"b"]), timeout=10)
        bidi = channel.stream_stream(BIDI)(iter([b"1", b"2"]), timeout=10)
        echoed = list(bidi)
        future = channel.unary_unary(UNARY).future(b"f", timeout=10)
        assert future.result(timeout=10) == b"f"
    assert (response, streamed, gathered, echoed) == (b"u", [b"s", b"s"], b"ab", [b"1", b"2"])
    for finished in (call, stream, upload, bidi):
        assert finished.code() is grpc.StatusCode.OK
        assert trace_id_of(finished) is not None
    # A stream's client span ends in a done-callback that gRPC may run just after the reader saw the end.
    eventually(lambda: len(exporter.get_finished_spans()) == 10, "every span ended")
    assert traces(exporter) == [["CLIENT", "SERVER"]] * 5


def test_aio_every_kind_of_call_goes_through_the_whole_stack(spans: Spans, behavior: Behavior) -> None:
    provider, exporter = spans

    async def requests() -> AsyncIterator[bytes]:
        for request in (b"a", b"b"):
            yield request

    async def main() -> tuple:
        client = aio_client_interceptors(POLICY, tracer_provider=provider)
        async with aio_served(behavior, client, aio_server_interceptors(tracer_provider=provider)) as channel:
            unary = channel.unary_unary(UNARY)(b"u", timeout=10)
            response = await unary
            streamed = [r async for r in channel.unary_stream(SERVER_STREAM)(b"s", timeout=10)]
            gathered = await channel.stream_unary(CLIENT_STREAM)(requests(), timeout=10)
            echoed = [r async for r in channel.stream_stream(BIDI)(requests(), timeout=10)]
            return response, streamed, gathered, echoed, trace_id_in(await unary.trailing_metadata())

    response, streamed, gathered, echoed, trace_id = asyncio.run(main())
    assert (response, streamed, gathered, echoed) == (b"u", [b"s", b"s"], b"ab", [b"a", b"b"])
    assert trace_id is not None
    assert traces(exporter) == [["CLIENT", "SERVER"]] * 4


@pytest.mark.parametrize("method", [UNARY, SERVER_STREAM])
def test_aio_call_refused_locally_is_traced_and_its_span_ends(spans: Spans, method: str) -> None:
    provider, exporter = spans
    registry = BreakerRegistry(BreakerPolicy(minimum_calls=1, window_size=1))

    async def call(channel: grpc.aio.Channel) -> None:
        if method == UNARY:
            await channel.unary_unary(method)(b"x", timeout=10)
        else:
            async for _ in channel.unary_stream(method)(b"x", timeout=10):
                pass

    async def main() -> grpc.aio.AioRpcError:
        interceptors = aio_client_interceptors(tracer_provider=provider, breakers=registry)
        async with grpc.aio.insecure_channel(dead_address(), interceptors=interceptors) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await call(channel)
            await aio_eventually(lambda: registry.get(SERVICE).state is State.OPEN, "the breaker opens")
            exporter.clear()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(channel)
            return refused.value

    refused = asyncio.run(main())
    (span,) = exporter.get_finished_spans()
    assert refused.code() is grpc.StatusCode.UNAVAILABLE
    assert dict(refused.trailing_metadata())["x-breaker-state"] == "open"
    assert span.status.status_code is StatusCode.ERROR
    assert trace_id_of(refused) == f"{span.context.trace_id:032x}"


def test_example_runs_standalone_and_prints_a_trace_id(tmp_path: Path) -> None:
    env = {**os.environ, "CONTROLPLANE_TRACE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("OTEL_TRACES_EXPORTER", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "interceptors_example.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"trace id: [0-9a-f]{32}", result.stdout), result.stdout
    assert list(tmp_path.glob("*.jsonl")), "the example's spans were not written"


def test_exception_from_an_inner_interceptor_reaches_the_caller_unchanged(spans: Spans) -> None:
    provider, _ = spans

    class Broken(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation: object, details: object, request: object) -> object:
            raise KeyError("bug in an inner interceptor")

    interceptors = [*client_interceptors(POLICY, tracer_provider=provider), Broken()]
    with sync_channel(dead_address(), interceptors) as channel, pytest.raises(KeyError, match="bug in an inner"):
        channel.unary_unary(UNARY)(b"x", timeout=10)
