"""`intercepted_channel` runs unary calls without grpcio's interceptor layer, and behaves as
`grpc.intercept_channel` with the same interceptor does: same responses, errors, trailers, spans, breaker
and bulkhead accounting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controlplane.interceptors import (
    TRACE_ID_KEY,
    BreakerOpen,
    BreakerPolicy,
    BreakerRegistry,
    BulkheadPolicy,
    BulkheadRegistry,
    ClientPolicy,
    client_interceptors,
    intercepted_channel,
)
from controlplane.interceptors.channel import _DirectChannel

from .servers import SERVER_STREAM, UNARY, Behavior, sync_server, trailing

POLICY = ClientPolicy(breaker=BreakerPolicy(minimum_calls=2, window_size=2, wait_in_open=60.0),
                      bulkhead=BulkheadPolicy(max_concurrent=1))

Opener = Callable[[grpc.Channel, Any], grpc.Channel]
OPENERS = {
    "grpc.intercept_channel": lambda channel, interceptor: grpc.intercept_channel(channel, interceptor),
    "intercepted_channel": lambda channel, interceptor: intercepted_channel(channel, interceptor),
}


class Stack:
    """One client stack with its own breakers, bulkheads and span exporter, on a channel opened by `open`."""

    def __init__(self, address: str, open_channel: Opener) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.breakers = BreakerRegistry(POLICY.breaker)
        self.bulkheads = BulkheadRegistry(POLICY.bulkhead)
        (interceptor,) = client_interceptors(POLICY, tracer_provider=provider, breakers=self.breakers,
                                             bulkheads=self.bulkheads)
        self.channel = open_channel(grpc.insecure_channel(address), interceptor)

    def spans(self) -> list[tuple[str, Any, dict[str, Any], Any]]:
        return [(s.name, s.kind, dict(s.attributes or {}), s.status.status_code)
                for s in self.exporter.get_finished_spans()]


@pytest.fixture
def stacks(behavior: Behavior) -> Iterator[dict[str, Stack]]:
    with sync_server(behavior) as address:
        made = {name: Stack(address, opener) for name, opener in OPENERS.items()}
        yield made
        for stack in made.values():
            stack.channel.close()


def test_our_one_interceptor_gets_the_direct_channel_and_anything_else_grpcs() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    assert isinstance(intercepted_channel(channel, *client_interceptors()), _DirectChannel)
    assert not isinstance(intercepted_channel(channel, *client_interceptors(), *client_interceptors()),
                          _DirectChannel)


def test_a_call_that_succeeds_answers_and_is_traced_the_same(stacks: dict[str, Stack]) -> None:
    seen = {}
    for name, stack in stacks.items():
        call = stack.channel.unary_unary(UNARY)
        response, outcome = call.with_call(b"ping", timeout=5)
        seen[name] = (call(b"pong", timeout=5), response, outcome.code(), stack.spans(),
                      stack.breakers.snapshot()["test.Echo"].calls)
    assert seen["intercepted_channel"] == seen["grpc.intercept_channel"]
    assert seen["intercepted_channel"][:3] == (b"pong", b"ping", grpc.StatusCode.OK)


def test_a_failed_call_raises_the_same_error_with_the_trace_id_and_counts_the_same(
        behavior: Behavior, stacks: dict[str, Stack]) -> None:
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE
    seen = {}
    for name, stack in stacks.items():
        with pytest.raises(grpc.RpcError) as failed:
            stack.channel.unary_unary(UNARY)(b"", timeout=5)
        error = failed.value
        trace_ids = [s.context.trace_id for s in stack.exporter.get_finished_spans()]
        assert trailing(error)[TRACE_ID_KEY] == f"{trace_ids[0]:032x}"
        seen[name] = (error.code(), error.details(), stack.spans(), stack.breakers.snapshot()["test.Echo"].failures)
    assert seen["intercepted_channel"] == seen["grpc.intercept_channel"]
    assert seen["intercepted_channel"][0] is grpc.StatusCode.UNAVAILABLE


def test_an_open_breaker_refuses_both_ways_with_its_cause(behavior: Behavior, stacks: dict[str, Stack]) -> None:
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE
    calls_before = {}
    for name, stack in stacks.items():
        call = stack.channel.unary_unary(UNARY)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                call(b"", timeout=5)
        calls_before[name] = behavior.calls
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=5)
        assert isinstance(refused.value.cause, BreakerOpen)  # type: ignore[attr-defined]
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert behavior.calls == calls_before[name]  # refused locally: the server saw nothing


def test_a_request_that_cannot_be_serialized_fails_internal_and_frees_the_bulkhead_slot(
        stacks: dict[str, Stack]) -> None:
    def refuse(request: Any) -> bytes:
        raise ValueError("cannot serialize this")

    for stack in stacks.values():
        broken = stack.channel.unary_unary(UNARY, request_serializer=refuse)
        with pytest.raises(grpc.RpcError) as failed:
            broken(b"x", timeout=5)
        assert failed.value.code() is grpc.StatusCode.INTERNAL  # grpcio's "Exception serializing request!"
        assert stack.bulkheads.snapshot()["test.Echo"].in_flight == 0  # the one slot came back
        assert stack.channel.unary_unary(UNARY)(b"again", timeout=5) == b"again"
    assert stacks["intercepted_channel"].spans() == stacks["grpc.intercept_channel"].spans()


def test_futures_and_streams_still_run_the_chain(stacks: dict[str, Stack]) -> None:
    for stack in stacks.values():
        assert stack.channel.unary_unary(UNARY).future(b"f", timeout=5).result() == b"f"
        assert list(stack.channel.unary_stream(SERVER_STREAM)(b"s", timeout=5)) == [b"s", b"s"]
    names = [span[0] for span in stacks["intercepted_channel"].spans()]
    assert names == [UNARY, SERVER_STREAM]
    assert stacks["intercepted_channel"].spans() == stacks["grpc.intercept_channel"].spans()
