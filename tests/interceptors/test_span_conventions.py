"""Our spans against opentelemetry-instrumentation-grpc's, call by call, sync and asyncio.

The same calls go once through the instrumentation's client and server interceptors and once through
ours (`spans.ClientSpans` / `spans.ServerSpans` inside our stack); each side's spans are compared field
by field: name, kind, attributes, status, and the parent link from the server span to the client span.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from controlplane.interceptors import tracing

from .servers import SERVER_STREAM, UNARY, Behavior, aio_served, sync_served


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def abort_not_found(request: bytes, context: Any) -> None:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def abort_unavailable(request: bytes, context: Any) -> None:
    context.abort(grpc.StatusCode.UNAVAILABLE, "down for now")


def set_internal(request: bytes, context: Any) -> bytes:
    context.set_code(grpc.StatusCode.INTERNAL)
    context.set_details("broke inside")
    return b""


async def aio_abort_not_found(request: bytes, context: Any) -> None:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


async def aio_abort_unavailable(request: bytes, context: Any) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "down for now")


SYNC_CASES: dict[str, tuple[str, Callable[..., Any] | None]] = {
    "ok": (UNARY, None),
    "abort NOT_FOUND": (UNARY, abort_not_found),
    "abort UNAVAILABLE": (UNARY, abort_unavailable),
    "set_code INTERNAL": (UNARY, set_internal),
    "server stream": (SERVER_STREAM, None),
}
AIO_CASES: dict[str, tuple[str, Callable[..., Any] | None]] = {
    "ok": (UNARY, None),
    "abort NOT_FOUND": (UNARY, aio_abort_not_found),
    "abort UNAVAILABLE": (UNARY, aio_abort_unavailable),
    "set_code INTERNAL": (UNARY, set_internal),
    "server stream": (SERVER_STREAM, None),
}


def described(span: ReadableSpan) -> dict[str, Any]:
    """What the conventions fix about a span (the peer port differs from connection to connection)."""
    attributes = dict(span.attributes or {})
    attributes.pop("net.peer.port", None)
    attributes.pop("rpc.user_agent", None)  # both set it from the same header; checked apart below
    return {"name": span.name, "kind": span.kind, "attributes": attributes, "status": span.status.status_code}


def by_kind(spans: tuple[ReadableSpan, ...]) -> tuple[ReadableSpan, ReadableSpan]:
    (client,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    return client, server


def assert_same(theirs: tuple[ReadableSpan, ...], ours: tuple[ReadableSpan, ...], case: str) -> None:
    their_client, their_server = by_kind(theirs)
    our_client, our_server = by_kind(ours)
    assert described(our_client) == described(their_client), case
    assert described(our_server) == described(their_server), case
    assert our_server.status.description == their_server.status.description, case
    assert our_server.attributes.get("rpc.user_agent") == their_server.attributes.get("rpc.user_agent"), case
    assert our_server.attributes["net.peer.port"].isdigit(), case
    for client, server in ((our_client, our_server), (their_client, their_server)):
        assert server.parent is not None and server.parent.span_id == client.context.span_id, case
        assert server.context.trace_id == client.context.trace_id, case


def sync_spans(behavior: Behavior, method: str, instrumentation: bool) -> tuple[ReadableSpan, ...]:
    tracer_provider, exporter = provider()
    if instrumentation:
        client = [tracing.otel_client_interceptor(tracer_provider)]
        server = [tracing.otel_server_interceptor(tracer_provider)]
    else:
        client = tracing.client_interceptors(tracer_provider)
        server = tracing.server_interceptors(tracer_provider)
    with sync_served(behavior, client, server) as channel:
        try:
            if method == SERVER_STREAM:
                list(channel.unary_stream(method)(b"x", timeout=10))
            else:
                channel.unary_unary(method)(b"x", timeout=10)
        except grpc.RpcError:
            pass
    tracer_provider.shutdown()
    return exporter.get_finished_spans()


async def aio_spans(behavior: Behavior, method: str, instrumentation: bool) -> tuple[ReadableSpan, ...]:
    tracer_provider, exporter = provider()
    if instrumentation:
        client = tracing.otel_aio_client_interceptors(tracer_provider)
        server = [tracing.otel_aio_server_interceptor(tracer_provider)]
    else:
        client = tracing.aio_client_interceptors(tracer_provider)
        server = tracing.aio_server_interceptors(tracer_provider)
    async with aio_served(behavior, client, server) as channel:
        try:
            if method == SERVER_STREAM:
                [r async for r in channel.unary_stream(method)(b"x", timeout=10)]
            else:
                await channel.unary_unary(method)(b"x", timeout=10)
        except grpc.RpcError:
            pass
    tracer_provider.shutdown()
    return exporter.get_finished_spans()


@pytest.mark.parametrize("case", list(SYNC_CASES))
def test_sync_spans_match_the_instrumentation(case: str) -> None:
    method, on_call = SYNC_CASES[case]
    behavior = Behavior()
    behavior.on_call = on_call
    assert_same(sync_spans(behavior, method, True), sync_spans(behavior, method, False), case)


@pytest.mark.parametrize("case", list(AIO_CASES))
def test_aio_spans_match_the_instrumentation(case: str) -> None:
    method, on_call = AIO_CASES[case]
    behavior = Behavior()
    behavior.on_call = on_call
    theirs = asyncio.run(aio_spans(behavior, method, True))
    ours = asyncio.run(aio_spans(behavior, method, False))
    assert_same(theirs, ours, case)


def test_a_handler_that_raises_is_an_unknown_error_recorded_once() -> None:
    """Where the instrumentation says 0 (OK) and records the exception twice, we say what the caller got."""

    def broken(request: bytes, context: Any) -> bytes:
        raise RuntimeError("bug in the handler")

    behavior = Behavior()
    behavior.on_call = broken
    ours = sync_spans(behavior, UNARY, False)
    client, server = by_kind(ours)
    assert client.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNKNOWN.value[0]
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNKNOWN.value[0]
    assert server.status.description.startswith("StatusCode.UNKNOWN:")
    assert [event.name for event in server.events] == ["exception"]
    assert server.events[0].attributes["exception.message"] == "bug in the handler"
