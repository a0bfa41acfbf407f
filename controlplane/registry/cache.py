"""Instances per service, kept fresh by one Consul blocking query per watched service."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from controlplane.registry.model import Instance
from controlplane.registry.store import RegistryStore
from controlplane.watch import Backoff, BlockingQueryWatch, Snapshot


@dataclass(frozen=True)
class CacheSettings:
    """Timings of the instance cache, in seconds."""

    # Longest a blocking query waits for a change before Consul answers anyway.
    blocking_wait: float = 30.0
    # Longest a Discover on a not yet watched service waits for Consul's first answer.
    first_sync_timeout: float = 5.0
    # A watch nobody used for this long is stopped.
    idle_timeout: float = 300.0
    backoff: Backoff = field(default_factory=Backoff)


class InstanceCache:
    """Serves Discover and Watch from memory; Consul is asked once per change, not once per call."""

    def __init__(self, store: RegistryStore, settings: CacheSettings = CacheSettings()) -> None:
        self._store = store
        self._settings = settings
        self._watches: dict[str, BlockingQueryWatch[tuple[Instance, ...]]] = {}

    def watch(self, service: str) -> BlockingQueryWatch[tuple[Instance, ...]]:
        """The (started) watch of one service's instances."""
        self._drop_idle()
        found = self._watches.get(service)
        if found is None:

            async def fetch(index: int, wait: float) -> tuple[int, tuple[Instance, ...]]:
                return await self._store.fetch_instances(service, index, wait)

            found = BlockingQueryWatch(
                f"instances of {service}",
                fetch,
                wait=self._settings.blocking_wait,
                backoff=self._settings.backoff,
            ).start()
            self._watches[service] = found
        return found

    async def current(self, service: str, timeout: float | None = None) -> Snapshot[tuple[Instance, ...]]:
        """The latest known instances of `service` (possibly stale), waiting for a first answer if needed."""
        limit = (
            self._settings.first_sync_timeout if timeout is None else min(timeout, self._settings.first_sync_timeout)
        )
        return await self.watch(service).first_sync(limit)

    async def stop(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await watch.stop()

    def _drop_idle(self) -> None:
        cutoff = time.monotonic() - self._settings.idle_timeout
        for service, watch in list(self._watches.items()):
            if watch.subscribers == 0 and watch.last_used < cutoff:
                del self._watches[service]
                # Stopping is cheap and needs no await to take effect for callers: the task is cancelled.
                watch.cancel()
