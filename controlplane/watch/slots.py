"""A fair limit on the blocking queries a process keeps open at once.

Each blocking query holds one connection to the Consul agent for up to its wait, and the agent refuses
connections from one address past `limits.http_max_conns_per_client`, the process's other requests
included. A connection pool's own limit is no fair queue: a watch whose query just returned asks again
at once and takes the connection back before the woken waiter runs, so a few watches keep the pool and
the rest never get a turn. Here a freed slot is handed to the oldest waiter, so a watch asking again
queues behind the ones already waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType


class FairSlots:
    """At most `limit` holders at once (`async with slots:`); waiters are served first in, first out."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a limit of at least one slot is needed, got {limit}")
        self.limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot it will not use: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands
                return
        self._free += 1
