"""One Consul blocking-query loop whose latest result any number of subscribers follow.

Consul blocking queries return when the watched data changes (or the wait runs out). Running one loop
per watched resource and letting every interested gRPC stream follow its latest value keeps Consul's
load independent of the number of clients. Subscribers see the newest value, not every intermediate
one: a subscriber that falls behind catches up with the current state, which is what a watch of state
(rather than of events) should do.

While Consul is unreachable the last value stays available, marked stale; the loop retries with
backoff and recovers by itself. After a failure the loop asks at once (index 0) instead of blocking at
the old index, so the value is confirmed fresh as soon as Consul answers. With a `Reachability`, the
value is marked stale as soon as the probe finds Consul unable to serve, even while a blocking query
hangs, and refreshed as soon as it can again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from controlplane.errors import ConsulUnavailable
from controlplane.watch.reachability import Reachability
from controlplane.watch.slots import FairSlots

T = TypeVar("T")

# fetch(index, wait_seconds) -> (new_index, value). index 0 means "answer at once".
Fetch = Callable[[int, float], Awaitable[tuple[int, T]]]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Retry delays while Consul is unreachable, in seconds."""

    initial: float = 0.1
    maximum: float = 2.0
    multiplier: float = 2.0

    def next(self, current: float) -> float:
        return min(self.maximum, current * self.multiplier)


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """The latest known value of a watched resource.

    `generation` increases whenever `value` or `stale` changes; `synced_at` (Unix seconds) is the last
    time Consul confirmed the value.
    """

    value: T | None
    index: int
    stale: bool
    synced_at: float | None
    generation: int


class BlockingQueryWatch(Generic[T]):
    """Follows one Consul resource with blocking queries and fans its latest value out."""

    def __init__(self, name: str, fetch: Fetch[T], *, wait: float = 30.0, backoff: Backoff = Backoff(),
                 reachability: Reachability | None = None, slots: FairSlots | None = None) -> None:
        """`slots`: shared by the watches that may not all hold a query open at once (see FairSlots)."""
        self.name = name
        self._slots = slots
        self._reachability = reachability
        self._fetch = fetch
        self._wait = wait
        self._backoff = backoff
        self._snapshot: Snapshot[T] = Snapshot(None, 0, False, None, 0)
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._synced = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribers = 0
        self.last_used = time.monotonic()

    @property
    def current(self) -> Snapshot[T]:
        return self._snapshot

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open now."""
        return self._subscribers

    def start(self) -> BlockingQueryWatch[T]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"watch:{self.name}")
        return self

    def cancel(self) -> None:
        """End the loop and every subscription without waiting for the loop to finish."""
        self._stopped.set()
        self._notify()
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """End the loop and every subscription, and wait for the loop to finish."""
        self.cancel()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def first_sync(self, timeout: float) -> Snapshot[T]:
        """The current snapshot, once Consul has answered at least once.

        Raises ConsulUnavailable when no value has ever been fetched within `timeout` seconds.
        """
        self.last_used = time.monotonic()
        if not self._synced.is_set():
            try:
                await asyncio.wait_for(self._synced.wait(), timeout)
            except TimeoutError:
                raise ConsulUnavailable(f"no data for {self.name}: Consul has not answered yet") from None
        return self._snapshot

    async def subscribe(self) -> AsyncGenerator[Snapshot[T], None]:
        """Yield the current snapshot once synced, then each newer one, until stop()."""
        self._subscribers += 1
        try:
            seen = -1
            await _first(self._synced.wait(), self._stopped.wait())
            while not self._stopped.is_set():
                snapshot = self._snapshot
                if snapshot.generation > seen:
                    seen = snapshot.generation
                    self.last_used = time.monotonic()
                    yield snapshot
                    continue
                await asyncio.shield(self._changed)
        finally:
            self._subscribers -= 1

    def _publish(self, value: T | None, index: int, stale: bool, synced: bool) -> None:
        old = self._snapshot
        changed = value != old.value or stale != old.stale or (synced and not self._synced.is_set())
        synced_at = time.time() if synced else old.synced_at
        generation = old.generation + 1 if changed else old.generation
        self._snapshot = replace(old, value=value, index=index, stale=stale, synced_at=synced_at, generation=generation)
        if synced:
            self._synced.set()
        if changed:
            self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.get_running_loop().create_future()
        if not changed.done():
            changed.set_result(None)

    async def _run(self) -> None:
        index = 0
        delay = self._backoff.initial
        while not self._stopped.is_set():
            reachability = self._reachability
            if reachability is not None and not reachability.up:
                self._mark_stale("the Consul probe finds it unable to serve")
                await _first(reachability.wait_up(), self._stopped.wait())
                index = 0  # ask at once: unchanged data would keep a blocking query waiting
                continue
            try:
                new_index, value = await self._fetch_while_reachable(index)
            except _Unreachable:
                continue
            except ConsulUnavailable as exc:
                self._mark_stale(str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                delay = self._backoff.next(delay)
                index = 0
                continue
            except Exception:  # a bug or an unexpected answer must not kill the watch for good
                log.exception("watch %s: unexpected failure; retrying", self.name)
                await asyncio.sleep(delay)
                delay = self._backoff.next(delay)
                index = 0
                continue
            delay = self._backoff.initial
            if self._snapshot.stale:
                log.info("watch %s: Consul answers again", self.name)
            self._publish(value, new_index, stale=False, synced=True)
            # Consul's index can go backwards (e.g. after a restore): start over from 0 then.
            # It must never be 0 in a blocking query, which would return at once.
            index = 0 if new_index < index else max(new_index, 1)

    def _mark_stale(self, why: str) -> None:
        if not self._snapshot.stale:
            log.warning("watch %s: serving last known value, marked stale: %s", self.name, why)
        self._publish(self._snapshot.value, self._snapshot.index, stale=True, synced=False)

    async def _fetch_while_reachable(self, index: int) -> tuple[int, T]:
        """The fetch's answer; _Unreachable when the probe found Consul unable to serve first."""
        if self._reachability is None:
            return await self._fetch_in_turn(index)
        fetch = asyncio.ensure_future(self._fetch_in_turn(index))
        down = asyncio.ensure_future(self._reachability.wait_down())
        try:
            await asyncio.wait([fetch, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
        if fetch.cancelled():
            raise _Unreachable
        return fetch.result()

    async def _fetch_in_turn(self, index: int) -> tuple[int, T]:
        if self._slots is None:
            return await self._fetch(index, self._wait)
        async with self._slots:
            return await self._fetch(index, self._wait)


class _Unreachable(Exception):
    pass


async def _first(*waits: Awaitable[object]) -> None:
    """Return when the first of `waits` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
