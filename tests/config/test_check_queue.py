"""The one thread config checks run on: bounded in all and per caller, callers take turns, and a check
whose caller left is not run."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pytest

from controlplane.config.check_queue import CHECK_CALLER, CheckQueue
from controlplane.errors import LimitExceeded


def as_caller(caller: str, queue: CheckQueue, check: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """queue.run(check, *args) in a task whose CHECK_CALLER is `caller` (as the servicer sets it per call)."""
    context = contextvars.copy_context()
    context.run(CHECK_CALLER.set, caller)
    return asyncio.get_running_loop().create_task(queue.run(check, *args), context=context)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


def gated() -> tuple[threading.Event, list[str], Callable[[str], str]]:
    gate, ran = threading.Event(), []

    def check(name: str) -> str:
        gate.wait(30)
        ran.append(name)
        return name

    return gate, ran, check


def test_past_the_bound_a_check_is_refused_and_an_abandoned_one_never_runs() -> None:
    async def scenario() -> tuple[list[str], int]:
        queue = CheckQueue(max_waiting=3, per_caller=3)
        gate, ran, check = gated()
        first, second, third = (as_caller("a", queue, check, name) for name in ("first", "second", "third"))
        await until(lambda: queue.waiting == 3)
        with pytest.raises(LimitExceeded, match="3 config checks are waiting"):
            await as_caller("b", queue, check, "fourth")
        second.cancel()  # its caller went away while "first" held the thread
        with pytest.raises(asyncio.CancelledError):
            await second
        assert queue.waiting == 2  # its slot is free at once
        gate.set()
        assert await first == "first" and await third == "third"
        return ran, queue.waiting

    ran, waiting = asyncio.run(scenario())
    assert ran == ["first", "third"] and waiting == 0


def test_one_caller_cannot_take_every_slot() -> None:
    async def scenario() -> list[str]:
        queue = CheckQueue(max_waiting=6, per_caller=2)
        gate, ran, check = gated()
        flood = [as_caller("flood", queue, check, f"flood-{n}") for n in range(2)]
        await until(lambda: queue.waiting == 2)
        with pytest.raises(LimitExceeded, match="2 config checks of this caller are waiting"):
            await as_caller("flood", queue, check, "flood-2")
        other = as_caller("other", queue, check, "other")  # the queue has room for other callers
        await until(lambda: queue.waiting == 3)
        gate.set()
        await asyncio.gather(*flood, other)
        return ran

    assert sorted(asyncio.run(scenario())) == ["flood-0", "flood-1", "other"]


def test_callers_take_turns() -> None:
    async def scenario() -> list[str]:
        queue = CheckQueue(max_waiting=10, per_caller=5)
        gate, ran, check = gated()
        flood = [as_caller("flood", queue, check, f"flood-{n}") for n in range(5)]
        await until(lambda: queue.waiting == 5)
        other = as_caller("other", queue, check, "other")
        await until(lambda: queue.waiting == 6)
        gate.set()
        await asyncio.gather(*flood, other)
        return ran

    # flood-0 was running and flood-1 was next in line when "other" came: it goes after them, not after
    # the whole flood.
    assert asyncio.run(scenario()) == ["flood-0", "flood-1", "other", "flood-2", "flood-3", "flood-4"]


def test_a_check_that_raises_hands_its_error_to_its_caller_and_the_thread_goes_on() -> None:
    async def scenario() -> str:
        queue = CheckQueue()

        def broken() -> str:
            raise ValueError("bad schema")

        with pytest.raises(ValueError, match="bad schema"):
            await queue.run(broken)
        return await queue.run(str.upper, "next")

    assert asyncio.run(scenario()) == "NEXT"


def test_the_queue_serves_callers_of_event_loops_that_came_and_went() -> None:
    queue = CheckQueue()
    gate, _, check = gated()

    async def leave_a_check_running() -> None:
        task = asyncio.ensure_future(queue.run(check, "left"))
        await until(lambda: queue.waiting == 1)
        task.cancel()

    asyncio.run(leave_a_check_running())  # its loop is closed while the check still runs
    gate.set()

    async def later() -> str:
        return await queue.run(str.upper, "later")

    assert asyncio.run(later()) == "LATER"


def test_per_caller_must_fit_in_the_queue() -> None:
    with pytest.raises(ValueError, match="per_caller"):
        CheckQueue(max_waiting=4, per_caller=5)
