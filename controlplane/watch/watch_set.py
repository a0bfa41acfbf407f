"""A keyed set of blocking-query watches, started on first use and stopped when idle."""

from __future__ import annotations

import contextlib
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from controlplane.errors import LimitExceeded
from controlplane.watch.blocking_query import Backoff, BlockingQueryWatch
from controlplane.watch.reachability import Reachability

T = TypeVar("T")

# load(key, index, wait_seconds) -> (new_index, value)
Load = Callable[[str, int, float], Awaitable[tuple[int, T]]]

LIVE: weakref.WeakSet[WatchSet[Any]] = weakref.WeakSet()
"""Every WatchSet of the process, for metrics (`controlplane_consul_watches`)."""


# The share of a watch set that what clients name may hold (their Watch and WatchConfig streams, the
# services of ADS subscriptions): the rest stays for Discover and the saga invoker, whatever names clients send.
STREAM_SHARE = 0.75


class WatchSet(Generic[T]):
    """One BlockingQueryWatch per key (a service, a stream...), shared by every caller of that key.

    `what` names the watched thing in logs ("instances", "config"); `wait` is the blocking wait and
    `idle_timeout` how long a watch nobody subscribes to or reads is kept (seconds). At most
    `max_watches` run at once, each holding one Consul connection: past that the least recently used
    watch nobody subscribes to is dropped, and when every watch has subscribers a new key is refused
    (LimitExceeded, RESOURCE_EXHAUSTED) rather than queued behind the connection pool.
    """

    def __init__(self, what: str, load: Load[T], *, wait: float, backoff: Backoff, idle_timeout: float,
                 max_watches: int = 256, reachability: Reachability | None = None) -> None:
        self._what = what
        self._reachability = reachability
        self._max_watches = max_watches
        self._load = load
        self._wait = wait
        self._backoff = backoff
        self._idle_timeout = idle_timeout
        self._watches: dict[str, BlockingQueryWatch[T]] = {}
        self._streamed: Counter[str] = Counter()  # key -> clients' streams following it now
        LIVE.add(self)

    @property
    def what(self) -> str:
        return self._what

    def watch(self, key: str) -> BlockingQueryWatch[T]:
        """The started watch of `key`."""
        self._drop_idle()
        found = self._watches.get(key)
        if found is None:
            self._make_room()

            async def fetch(index: int, wait: float) -> tuple[int, T]:
                return await self._load(key, index, wait)

            found = BlockingQueryWatch(f"{self._what} of {key}", fetch, wait=self._wait, backoff=self._backoff,
                                       reachability=self._reachability)
            self._watches[key] = found.start()
        return found

    @contextlib.contextmanager
    def for_stream(self, key: str) -> Iterator[BlockingQueryWatch[T]]:
        """The watch of `key` for a client's stream (or an xDS view), counted for as long as the block runs:
        together they may follow at most STREAM_SHARE of `max_watches` keys (LimitExceeded past it)."""
        if key not in self._streamed:
            allowed = max(1, int(STREAM_SHARE * self._max_watches))
            if len(self._streamed) >= allowed:
                raise LimitExceeded(f"clients' streams and xDS subscriptions follow {len(self._streamed)} "
                                    f"{self._what} watches, the most they may ({allowed}); the rest are kept for "
                                    "Discover and the saga invoker")
        found = self.watch(key)
        self._streamed[key] += 1
        try:
            yield found
        finally:
            self._streamed[key] -= 1
            if not self._streamed[key]:
                del self._streamed[key]

    async def stop(self) -> None:
        """End every watch, and with them every subscription."""
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await watch.stop()

    def has(self, key: str) -> bool:
        """Whether `key` is watched now."""
        return key in self._watches

    def __len__(self) -> int:
        """The blocking-query watches running now."""
        return len(self._watches)

    def _make_room(self) -> None:
        if len(self._watches) < self._max_watches:
            return
        unused = [(watch.last_used, key) for key, watch in self._watches.items() if watch.subscribers == 0]
        if not unused:
            raise LimitExceeded(f"{self._max_watches} {self._what} watches are open, each with subscribers; "
                                "no more can be started now")
        _, key = min(unused)
        self._watches.pop(key).cancel()

    def _drop_idle(self) -> None:
        cutoff = time.monotonic() - self._idle_timeout
        for key, watch in list(self._watches.items()):
            if watch.subscribers == 0 and watch.last_used < cutoff:
                del self._watches[key]
                watch.cancel()  # takes effect at once; the loop's task ends on its own
