"""`intercepted_aio_channel` runs unary calls without grpc.aio's interceptor layer, and behaves as a grpc.aio
channel built with the same interceptors does: same responses, errors, trailers, spans, breaker and bulkhead
accounting; a call nobody awaits and a cancelled call still end their scopes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
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
    aio_client_interceptors,
    intercepted_aio_channel,
)
from controlplane.interceptors.aio_channel import _DirectAioChannel, _DirectUnaryUnary

from .servers import SERVER_STREAM, UNARY, WAIT, Behavior, aio_eventually, aio_server

POLICY = ClientPolicy(breaker=BreakerPolicy(minimum_calls=2, window_size=2, wait_in_open=60.0),
                      bulkhead=BulkheadPolicy(max_concurrent=1))

Opener = Callable[[str, list[Any]], grpc.aio.Channel]
OPENERS: dict[str, Opener] = {
    "grpc.aio": lambda address, interceptors: grpc.aio.insecure_channel(address, interceptors=interceptors),
    "intercepted_aio_channel": lambda address, interceptors: intercepted_aio_channel(address, interceptors),
}


class Stack:
    """One asyncio client stack with its own breakers, bulkheads and span exporter, on a channel from `open`."""

    def __init__(self, address: str, open_channel: Opener, policy: ClientPolicy = POLICY) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.breakers = BreakerRegistry(policy.breaker)
        self.bulkheads = BulkheadRegistry(policy.bulkhead)
        self.channel = open_channel(address, aio_client_interceptors(
            policy, tracer_provider=provider, breakers=self.breakers, bulkheads=self.bulkheads))

    def spans(self) -> list[tuple[str, Any, dict[str, Any], Any]]:
        return [(s.name, s.kind, dict(s.attributes or {}), s.status.status_code)
                for s in self.exporter.get_finished_spans()]

    def in_flight(self) -> int:
        return self.bulkheads.snapshot()["test.Echo"].in_flight


def each_stack(behavior: Behavior, body: Callable[[str, Stack], Awaitable[Any]]) -> dict[str, Any]:
    """What `body` returns for a stack on each kind of channel, against one grpc.aio server."""

    async def main() -> dict[str, Any]:
        async with aio_server(behavior) as address:
            seen = {}
            for name, opener in OPENERS.items():
                stack = Stack(address, opener)
                try:
                    seen[name] = await body(name, stack)
                finally:
                    await stack.channel.close()
            return seen

    return asyncio.run(main())


def test_our_stack_gets_the_direct_channel_and_anything_else_grpc_aios() -> None:
    async def main() -> None:
        ours = intercepted_aio_channel("127.0.0.1:1", aio_client_interceptors())
        twice = intercepted_aio_channel("127.0.0.1:1", [*aio_client_interceptors(), *aio_client_interceptors()])
        assert isinstance(ours, _DirectAioChannel)
        assert not isinstance(twice, _DirectAioChannel)
        await ours.close()
        await twice.close()

    asyncio.run(main())


def test_a_call_that_succeeds_answers_and_is_traced_the_same(behavior: Behavior) -> None:
    async def body(name: str, stack: Stack) -> Any:
        call = stack.channel.unary_unary(UNARY)(b"ping", timeout=5)
        response = await call
        return (response, await call.code(), await call.details(), stack.spans(),
                stack.breakers.snapshot()["test.Echo"].calls, stack.in_flight())

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"]
    assert seen["intercepted_aio_channel"][:2] == (b"ping", grpc.StatusCode.OK)


def test_a_failed_call_raises_the_same_error_with_the_trace_id_and_counts_the_same(behavior: Behavior) -> None:
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE

    async def body(name: str, stack: Stack) -> Any:
        call = stack.channel.unary_unary(UNARY)(b"", timeout=5)
        try:
            await call
        except grpc.aio.AioRpcError as error:
            failed = error
        else:
            raise AssertionError("the call should have failed")
        trace_id = f"{stack.exporter.get_finished_spans()[0].context.trace_id:032x}"
        assert dict(failed.trailing_metadata())[TRACE_ID_KEY] == trace_id
        assert dict(await call.trailing_metadata())[TRACE_ID_KEY] == trace_id
        return (failed.code(), failed.details(), stack.spans(), stack.breakers.snapshot()["test.Echo"].failures)

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"]
    assert seen["intercepted_aio_channel"][0] is grpc.StatusCode.UNAVAILABLE


def test_an_open_breaker_refuses_both_ways_with_its_cause(behavior: Behavior) -> None:
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE

    async def body(name: str, stack: Stack) -> Any:
        call = stack.channel.unary_unary(UNARY)
        for _ in range(2):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call(b"", timeout=5)
        before = behavior.calls
        refused = call(b"", timeout=5)
        try:
            await refused
        except grpc.aio.AioRpcError as error:
            assert isinstance(error.cause, BreakerOpen)  # type: ignore[attr-defined]
            assert behavior.calls == before  # refused locally: the server saw nothing
            return error.code(), await refused.code()
        raise AssertionError("the open breaker should have refused the call")

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"] == (grpc.StatusCode.UNAVAILABLE,) * 2


def test_a_request_the_serializer_refuses_goes_as_grpc_aio_sends_it_and_frees_the_slot(behavior: Behavior) -> None:
    def refuse(request: Any) -> bytes:
        raise ValueError("cannot serialize this")

    async def body(name: str, stack: Stack) -> Any:
        broken = stack.channel.unary_unary(UNARY, request_serializer=refuse)
        call = broken(b"x", timeout=5)
        try:
            failure: Any = await call
        except Exception as error:
            failure = type(error), getattr(error, "code", lambda: None)()
        assert stack.in_flight() == 0  # the one slot came back
        assert await stack.channel.unary_unary(UNARY)(b"again", timeout=5) == b"again"
        return failure, stack.spans()

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"]
    assert seen["grpc.aio"][0] == b""  # grpc.aio logs the serializer's error and sends an empty message


def test_a_call_nobody_awaits_still_ends_its_scopes_and_frees_its_slot(behavior: Behavior) -> None:
    async def body(name: str, stack: Stack) -> Any:
        call = stack.channel.unary_unary(UNARY)(b"later", timeout=5)
        assert await call.code() is grpc.StatusCode.OK  # the status is read; the call itself is never awaited
        await aio_eventually(lambda: stack.in_flight() == 0 and len(stack.spans()) == 1,
                             "the unawaited call to end its scopes")
        return stack.spans(), stack.breakers.snapshot()["test.Echo"].calls

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"]


def test_a_cancelled_call_ends_its_scopes_cancelled_and_frees_its_slot(behavior: Behavior) -> None:
    async def body(name: str, stack: Stack) -> Any:
        behavior.calls, behavior.gate = 0, threading.Event()
        call = stack.channel.unary_unary(UNARY)(b"stuck", timeout=WAIT)
        waiter = asyncio.ensure_future(call)
        await aio_eventually(lambda: behavior.calls > 0, "the call to reach the server")
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        behavior.gate.set()
        await aio_eventually(lambda: stack.in_flight() == 0, "the cancelled call to free its slot")
        return call.cancelled(), stack.spans()

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"]
    cancelled, spans = seen["intercepted_aio_channel"]
    assert cancelled
    assert [span[2]["rpc.grpc.status_code"] for span in spans] == [grpc.StatusCode.CANCELLED.value[0]]


def test_streams_still_run_the_chain(behavior: Behavior) -> None:
    async def body(name: str, stack: Stack) -> Any:
        responses = [r async for r in stack.channel.unary_stream(SERVER_STREAM)(b"s", timeout=5)]
        await aio_eventually(lambda: len(stack.spans()) == 1, "the stream's span to end")
        return responses, stack.spans()

    seen = each_stack(behavior, body)
    assert seen["intercepted_aio_channel"] == seen["grpc.aio"]
    assert seen["intercepted_aio_channel"][0] == [b"s", b"s"]
    assert [span[0] for span in seen["intercepted_aio_channel"][1]] == [SERVER_STREAM]


def test_a_call_whose_bulkhead_waits_for_a_slot_goes_through_grpc_aio_and_waits(behavior: Behavior) -> None:
    waiting = ClientPolicy(bulkhead=BulkheadPolicy(max_concurrent=1, max_wait=WAIT))

    async def main() -> None:
        async with aio_server(behavior) as address:
            stack = Stack(address, OPENERS["intercepted_aio_channel"], waiting)
            call = stack.channel.unary_unary(UNARY)
            assert not isinstance(call, _DirectUnaryUnary)  # a waiting concern: grpc.aio's interceptor layer
            behavior.gate = threading.Event()
            first = asyncio.ensure_future(call(b"first", timeout=WAIT))
            await aio_eventually(lambda: behavior.calls == 1, "the first call to take the slot")
            second = asyncio.ensure_future(call(b"second", timeout=WAIT))
            await asyncio.sleep(0.05)  # a window in which the second call would reach the server if it did not wait
            assert behavior.calls == 1 and not second.done()
            behavior.gate.set()
            assert await asyncio.gather(first, second) == [b"first", b"second"]
            await stack.channel.close()

    asyncio.run(main())
