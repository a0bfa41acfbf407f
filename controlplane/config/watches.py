"""One Consul blocking query per watched service, feeding every WatchConfig stream of that service.

Streams for different environments of a service share the watch: each derives its own merged document
from the service's snapshot and sends only when that document changed.
"""

from __future__ import annotations

import contextlib

from controlplane.config.model import ServiceState
from controlplane.config.settings import ConfigSettings
from controlplane.config.store import ConfigStore
from controlplane.watch import Backoff, BlockingQueryWatch, Reachability, WatchSet


class ConfigWatches:
    """The (lazily started) watch of each service's configuration; idle ones are stopped."""

    def __init__(self, store: ConfigStore, settings: ConfigSettings, *, blocking_wait: float, backoff: Backoff,
                 reachability: Reachability | None = None) -> None:
        self._watches: WatchSet[ServiceState] = WatchSet(
            "config", store.load, wait=blocking_wait, backoff=backoff, idle_timeout=settings.idle_timeout,
            max_watches=settings.max_watches, reachability=reachability,
        )

    def watch(self, service: str) -> BlockingQueryWatch[ServiceState]:
        return self._watches.watch(service)

    def for_stream(self, service: str) -> contextlib.AbstractContextManager[BlockingQueryWatch[ServiceState]]:
        """The watch of one service's configuration for a client's WatchConfig stream (see WatchSet.for_stream)."""
        return self._watches.for_stream(service)

    async def stop(self) -> None:
        """End every watch, and with them every WatchConfig stream."""
        await self._watches.stop()
