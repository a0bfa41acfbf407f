"""The one thread config checks run on: bounded, and a check whose caller left is not run."""

from __future__ import annotations

import asyncio
import threading

import pytest

from controlplane.config.schema import CheckWorker
from controlplane.errors import LimitExceeded


def test_past_the_bound_a_check_is_refused_and_an_abandoned_one_never_runs() -> None:
    async def scenario() -> tuple[list[str], int]:
        worker, gate, ran = CheckWorker(max_waiting=3), threading.Event(), []

        def check(name: str) -> str:
            gate.wait(30)
            ran.append(name)
            return name

        first = asyncio.ensure_future(worker.run(check, "first"))
        second = asyncio.ensure_future(worker.run(check, "second"))
        third = asyncio.ensure_future(worker.run(check, "third"))
        await asyncio.sleep(0)  # all three are waiting or running
        assert worker.waiting == 3
        with pytest.raises(LimitExceeded, match="3 config checks are waiting"):
            await worker.run(check, "fourth")
        second.cancel()  # its caller went away while "first" held the thread
        with pytest.raises(asyncio.CancelledError):
            await second
        gate.set()
        assert await first == "first" and await third == "third"
        return ran, worker.waiting

    ran, waiting = asyncio.run(scenario())
    assert ran == ["first", "third"] and waiting == 0
