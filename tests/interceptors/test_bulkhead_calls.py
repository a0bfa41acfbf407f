"""Bulkheads on real loopback calls, sync and asyncio: a cap on calls in flight, with an optional bounded wait."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from controlplane.interceptors import (
    BULKHEAD_KEY,
    BulkheadPolicy,
    BulkheadRegistry,
    ClientPolicy,
    aio_client_interceptors,
    client_interceptors,
)

from .servers import (
    SERVER_STREAM,
    SERVICE,
    UNARY,
    Behavior,
    aio_eventually,
    aio_served,
    eventually,
    sync_served,
    trailing,
)


def interceptors(registry: BulkheadRegistry) -> list:
    return client_interceptors(ClientPolicy(breaker=None), tracing=False, bulkheads=registry)


def aio_interceptors(registry: BulkheadRegistry) -> list:
    return aio_client_interceptors(ClientPolicy(breaker=None), tracing=False, bulkheads=registry)


def test_full_bulkhead_refuses_at_once_without_calling_the_server(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=2))
    behavior.gate = threading.Event()
    with sync_served(behavior, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        holding = [unary.future(b"1"), unary.future(b"2")]
        behavior.wait_in_flight(2)
        with pytest.raises(grpc.RpcError) as refused:
            unary(b"3")
        behavior.gate.set()
        assert [f.result(timeout=10) for f in holding] == [b"1", b"2"]
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailing(refused.value) == {BULKHEAD_KEY: "full"}
    assert behavior.calls == 2
    assert registry.snapshot()[SERVICE].rejected == 1


def test_call_waits_for_a_slot_that_frees_up_within_max_wait(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1, max_wait=10.0))
    behavior.gate = threading.Event()
    results: list[bytes] = []
    with sync_served(behavior, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        first = unary.future(b"first")
        behavior.wait_in_flight(1)
        waiter = threading.Thread(target=lambda: results.append(unary(b"second")))
        waiter.start()
        eventually(lambda: registry.snapshot()[SERVICE].waiting == 1, "the second call waits")
        assert behavior.calls == 1
        behavior.gate.set()
        assert first.result(timeout=10) == b"first"
        waiter.join(10)
    assert results == [b"second"]
    assert registry.snapshot()[SERVICE].rejected == 0


def test_call_is_refused_when_no_slot_frees_up_within_max_wait(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1, max_wait=0.05))
    behavior.gate = threading.Event()
    with sync_served(behavior, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        holding = unary.future(b"1")
        behavior.wait_in_flight(1)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            unary(b"2")
        waited = time.monotonic() - started
        behavior.gate.set()
        holding.result(timeout=10)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0.04 <= waited < 5


def test_stream_holds_its_slot_until_it_ends(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1))
    behavior.gate = threading.Event()
    with sync_served(behavior, interceptors(registry)) as channel:
        stream = channel.unary_stream(SERVER_STREAM)(b"s", timeout=10)
        behavior.wait_in_flight(1)
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(UNARY)(b"u")
        behavior.gate.set()
        assert list(stream) == [b"s", b"s"]
        eventually(lambda: registry.snapshot()[SERVICE].in_flight == 0, "the stream gives its slot back")
        assert channel.unary_unary(UNARY)(b"u") == b"u"
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_failed_calls_give_their_slot_back(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1))
    behavior.fail_with = grpc.StatusCode.INTERNAL
    with sync_served(behavior, interceptors(registry)) as channel:
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary(UNARY)(b"x")
            assert error.value.code() is grpc.StatusCode.INTERNAL
    assert registry.snapshot()[SERVICE].in_flight == 0


def test_aio_full_bulkhead_refuses_at_once_without_calling_the_server(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1))
    behavior.gate = threading.Event()

    async def main() -> grpc.aio.AioRpcError:
        async with aio_served(behavior, aio_interceptors(registry)) as channel:
            unary = channel.unary_unary(UNARY)
            holding = asyncio.ensure_future(unary(b"1"))
            await asyncio.to_thread(behavior.wait_in_flight, 1)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await unary(b"2")
            behavior.gate.set()
            assert await holding == b"1"
            return refused.value

    refused = asyncio.run(main())
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailing(refused) == {BULKHEAD_KEY: "full"}
    assert behavior.calls == 1


def test_aio_call_waits_for_a_slot_without_blocking_the_event_loop(behavior: Behavior) -> None:
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1, max_wait=10.0))
    behavior.gate = threading.Event()

    async def main() -> list[bytes]:
        async with aio_served(behavior, aio_interceptors(registry)) as channel:
            unary = channel.unary_unary(UNARY)
            first = asyncio.ensure_future(unary(b"first"))
            await asyncio.to_thread(behavior.wait_in_flight, 1)
            second = asyncio.ensure_future(unary(b"second"))
            # The loop keeps running while the second call waits for its slot.
            await aio_eventually(lambda: registry.snapshot()[SERVICE].waiting == 1, "the second call waits")
            assert behavior.calls == 1
            behavior.gate.set()
            return [await first, await second]

    assert asyncio.run(main()) == [b"first", b"second"]
    assert registry.snapshot()[SERVICE].rejected == 0
