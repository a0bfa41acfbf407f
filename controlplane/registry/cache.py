"""Instances per service, kept fresh by one Consul blocking query per watched service."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from controlplane.errors import LimitExceeded
from controlplane.registry.model import Instance
from controlplane.registry.store import RegistryStore
from controlplane.watch import Backoff, BlockingQueryWatch, Reachability, Snapshot, WatchSet


@dataclass(frozen=True)
class CacheSettings:
    """Timings of the instance cache, in seconds."""

    # Longest a blocking query waits for a change before Consul answers anyway.
    blocking_wait: float = 30.0
    # Longest a Discover on a not yet watched service waits for Consul's first answer.
    first_sync_timeout: float = 5.0
    # A watch nobody used for this long is stopped.
    idle_timeout: float = 300.0
    # Services watched at once (one Consul connection each); see WatchSet.
    max_watches: int = 256
    backoff: Backoff = field(default_factory=Backoff)


class InstanceCache:
    """Serves Discover and Watch from memory; Consul is asked once per change, not once per call."""

    def __init__(self, store: RegistryStore, settings: CacheSettings = CacheSettings(), *,
                 reachability: Reachability | None = None) -> None:
        self._settings = settings
        self._watches: WatchSet[tuple[Instance, ...]] = WatchSet(
            "instances",
            store.fetch_instances,
            wait=settings.blocking_wait,
            backoff=settings.backoff,
            idle_timeout=settings.idle_timeout,
            max_watches=settings.max_watches,
            reachability=reachability,
        )
        self._store = store

    def watch(self, service: str) -> BlockingQueryWatch[tuple[Instance, ...]]:
        """The (started) watch of one service's instances."""
        return self._watches.watch(service)

    def for_stream(self, service: str) -> contextlib.AbstractContextManager[BlockingQueryWatch[tuple[Instance, ...]]]:
        """The watch of one service's instances for a client's Watch stream (see WatchSet.for_stream)."""
        return self._watches.for_stream(service)

    async def current(self, service: str, timeout: float | None = None) -> Snapshot[tuple[Instance, ...]]:
        """The latest known instances of `service` (possibly stale), waiting for a first answer if needed.

        A service with no watch yet is first looked up with one short query: a name Consul does not
        know is answered at once with no instances, and starts no watch (Discover of made-up names
        must not fill the watch set or the connection pool). When every watch is taken (each with
        Watch streams subscribed), that query's answer is the answer: Discover keeps working for every
        client, one Consul query per call, whoever holds the watches.
        """
        limit = self._settings.first_sync_timeout
        if timeout is not None:
            limit = min(timeout, limit)
        if not self._watches.has(service):
            index, instances = await self._store.probe_instances(service, limit)
            if not instances:
                return Snapshot((), index, False, time.time(), 0)
            try:
                watch = self.watch(service)
            except LimitExceeded:
                return Snapshot(instances, index, False, time.time(), 0)
        else:
            watch = self.watch(service)
        return await watch.first_sync(limit)

    async def stop(self) -> None:
        await self._watches.stop()
