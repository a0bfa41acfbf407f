"""The one thread CPU-heavy config checks run on, shared fairly between callers.

Schema checks and document validation never run on the event loop (a size-cap schema takes the
interpreter for a long time), so they run here, one at a time. The queue is bounded twice: at most
`max_waiting` checks wait or run in all, and at most `per_caller` of them are one caller's. Callers take
turns (round robin), so a client flooding SetSchema with size-cap schemas delays another client's write
by one check of its own, not by the whole flood, and cannot take every slot: the flood is refused with
RESOURCE_EXHAUSTED, the other writes are not. A check whose caller went away before its turn came is
not run.

The caller is `CHECK_CALLER` (the servicer sets it per call, `identity.caller_of`: the authenticated
identity, else the peer's address without its port, so new connections do not make a new caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controlplane.errors import LimitExceeded
from controlplane.held import Held

__all__ = ["CHECK_CALLER", "MAX_CHECKS_PER_CALLER", "MAX_WAITING_CHECKS", "CheckQueue", "off_loop"]

T = TypeVar("T")

MAX_WAITING_CHECKS = 32
MAX_CHECKS_PER_CALLER = 8

CHECK_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("controlplane_check_caller", default="")


@dataclass(eq=False)
class _Check:
    caller: str
    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[Any] = field(repr=False)


class CheckQueue:
    """Round-robin queue of checks per caller, served by one daemon thread started on first use."""

    def __init__(self, max_waiting: int = MAX_WAITING_CHECKS, per_caller: int = MAX_CHECKS_PER_CALLER) -> None:
        if not 1 <= per_caller <= max_waiting:
            raise ValueError(f"need 1 <= per_caller <= max_waiting, got {per_caller} and {max_waiting}")
        self.max_waiting = max_waiting
        self.per_caller = per_caller
        self._turn = threading.Condition()
        self._queues: dict[str, deque[_Check]] = {}  # callers in turn order: the first one goes next
        self._held = Held()  # checks waiting or running, per caller
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """Checks waiting or running now."""
        with self._turn:
            return self._held.total

    async def run(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`check(*args, **kwargs)` on the check thread, in the caller's turn; LimitExceeded when the queue or
        the caller's share of it is full."""
        caller = CHECK_CALLER.get()
        loop = asyncio.get_running_loop()
        job = _Check(caller, lambda: check(*args, **kwargs), loop, loop.create_future())
        with self._turn:
            total = self._held.total
            if total >= self.max_waiting:
                raise LimitExceeded(f"{total} config checks are waiting already; retry shortly")
            mine = self._held.of(caller)
            if mine >= self.per_caller:
                raise LimitExceeded(f"{mine} config checks of this caller are waiting already (at most "
                                    f"{self.per_caller}); retry when they are done")
            self._held.add(caller)
            self._queues.setdefault(caller, deque()).append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="config-checks", daemon=True)
                self._thread.start()
            self._turn.notify()
        try:
            return await job.done  # type: ignore[no-any-return]
        except asyncio.CancelledError:  # job.done is cancelled too: a check already running is not answered
            self._withdraw(job)
            raise

    def _withdraw(self, job: _Check) -> None:
        """The caller stopped waiting: drop the check if its turn has not come (a running one finishes)."""
        with self._turn:
            queue = self._queues.get(job.caller)
            if queue is not None and job in queue:
                queue.remove(job)
                if not queue:
                    del self._queues[job.caller]
                self._held.remove(job.caller)

    def _next(self) -> _Check:
        with self._turn:
            while not self._queues:
                self._turn.wait()
            caller = next(iter(self._queues))
            queue = self._queues.pop(caller)
            job = queue.popleft()
            if queue:
                self._queues[caller] = queue  # back of the line
            return job

    def _serve(self) -> None:
        while True:
            job = self._next()
            try:
                outcome: tuple[bool, Any] = (True, job.work())
            except BaseException as error:  # handed to the caller, whatever it is
                outcome = (False, error)
            with self._turn:
                self._held.remove(job.caller)
            with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody is waiting
                job.loop.call_soon_threadsafe(_settle, job.done, outcome)


def _settle(done: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if done.done():
        return
    ok, value = outcome
    if ok:
        done.set_result(value)
    else:
        done.set_exception(value)


_QUEUE = CheckQueue()


async def off_loop(check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a CPU-heavy check (check_schema, violations...) off the event loop and await its result;
    LimitExceeded when the queue, or this caller's share of it, is full."""
    return await _QUEUE.run(check, *args, **kwargs)
