"""The bulkhead's slots under asyncio: first in, first out, and no wake-up lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

from controlplane.interceptors import Bulkhead, BulkheadPolicy


def test_a_slot_handed_to_a_cancelled_waiter_goes_to_the_next_one() -> None:
    async def scenario() -> tuple[bool, float]:
        bulkhead = Bulkhead("svc", BulkheadPolicy(max_concurrent=1))
        assert bulkhead.try_acquire()
        first = asyncio.ensure_future(bulkhead.acquire_async(30.0))
        second = asyncio.ensure_future(bulkhead.acquire_async(30.0))
        await asyncio.sleep(0)  # both wait now
        loop = asyncio.get_running_loop()
        bulkhead.release()  # handed to `first`...
        first.cancel()  # ...which is cancelled before it runs
        began = loop.time()
        taken = await asyncio.wait_for(second, 5.0)  # without the hand-on it would idle for 30 s
        return taken, loop.time() - began

    taken, waited = asyncio.run(scenario())
    assert taken and waited < 1.0


def test_freed_slots_go_to_waiters_in_arrival_order_and_not_to_newcomers() -> None:
    async def scenario() -> tuple[list[int], bool]:
        bulkhead = Bulkhead("svc", BulkheadPolicy(max_concurrent=1))
        assert bulkhead.try_acquire()
        order: list[int] = []

        async def wait(n: int) -> None:
            assert await bulkhead.acquire_async(30.0)
            order.append(n)

        waiters = [asyncio.ensure_future(wait(n)) for n in range(3)]
        await asyncio.sleep(0)
        bulkhead.release()  # the slot is handed to waiter 0 before it even runs...
        newcomer = bulkhead.try_acquire()  # ...so a newcomer finds none
        for _ in range(3):
            await asyncio.sleep(0.01)
            bulkhead.release()
        await asyncio.gather(*waiters)
        return order, newcomer

    order, newcomer = asyncio.run(scenario())
    assert order == [0, 1, 2]
    assert newcomer is False


def test_a_waiter_that_times_out_counts_as_rejected_and_holds_nothing() -> None:
    async def scenario() -> tuple[bool, int, int]:
        bulkhead = Bulkhead("svc", BulkheadPolicy(max_concurrent=1))
        assert bulkhead.try_acquire()
        taken = await bulkhead.acquire_async(0.01)
        bulkhead.release()
        snapshot = bulkhead.snapshot()
        return taken, snapshot.in_flight, snapshot.rejected

    assert asyncio.run(scenario()) == (False, 0, 1)
