"""FairSlots: a bounded number of holders, served first in, first out."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.watch import FairSlots


async def settle() -> None:
    for _ in range(5):  # let woken tasks run (each hand-off is one loop turn)
        await asyncio.sleep(0)


def test_a_freed_slot_goes_to_the_oldest_waiter_not_to_a_holder_asking_again() -> None:
    async def scenario() -> list[str]:
        slots = FairSlots(1)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(name: str, again: bool = False) -> None:
            async with slots:
                order.append(name)
                if name == "first":
                    await release.wait()
            if again:
                async with slots:  # at once, like a watch whose query returned
                    order.append(name + " again")

        first = asyncio.ensure_future(hold("first", again=True))
        await settle()
        waiters = [asyncio.ensure_future(hold(f"waiter {n}")) for n in range(3)]
        await settle()
        assert (slots.held, slots.waiting) == (1, 3)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, *waiters), 5)
        return order

    assert asyncio.run(scenario()) == ["first", "waiter 0", "waiter 1", "waiter 2", "first again"]


def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    async def scenario() -> tuple[list[str], int]:
        slots = FairSlots(1)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(name: str) -> None:
            async with slots:
                order.append(name)
                if name == "holder":
                    await release.wait()

        holder = asyncio.ensure_future(hold("holder"))
        await settle()
        doomed = asyncio.ensure_future(hold("doomed"))
        last = asyncio.ensure_future(hold("last"))
        await settle()
        release.set()
        await asyncio.sleep(0)  # the holder leaves and hands its slot to "doomed", which has not run yet
        doomed.cancel()
        await asyncio.wait_for(asyncio.gather(holder, last), 5)  # without the pass-on, "last" waits for good
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return order, slots.held

    assert asyncio.run(scenario()) == (["holder", "last"], 0)


def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    async def scenario() -> tuple[int, int]:
        slots = FairSlots(2)
        async with slots, slots:
            waiter = asyncio.ensure_future(slots.__aenter__())
            await settle()
            waiting = slots.waiting
            waiter.cancel()
            await settle()
        return waiting, slots.held

    assert asyncio.run(scenario()) == (1, 0)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FairSlots(0)
