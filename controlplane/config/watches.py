"""One Consul blocking query per watched service, feeding every WatchConfig stream of that service.

Streams for different environments of a service share the watch: each derives its own merged document
from the service's snapshot and sends only when that document changed.
"""

from __future__ import annotations

import time

from controlplane.config.model import ServiceState
from controlplane.config.settings import ConfigSettings
from controlplane.config.store import ConfigStore
from controlplane.watch import Backoff, BlockingQueryWatch


class ConfigWatches:
    """The (lazily started) watch of each service's configuration; idle ones are stopped."""

    def __init__(self, store: ConfigStore, settings: ConfigSettings, *, blocking_wait: float, backoff: Backoff) -> None:
        self._store = store
        self._settings = settings
        self._wait = blocking_wait
        self._backoff = backoff
        self._watches: dict[str, BlockingQueryWatch[ServiceState]] = {}

    def watch(self, service: str) -> BlockingQueryWatch[ServiceState]:
        self._drop_idle()
        found = self._watches.get(service)
        if found is None:

            async def fetch(index: int, wait: float) -> tuple[int, ServiceState]:
                return await self._store.load(service, index, wait)

            found = BlockingQueryWatch(f"config of {service}", fetch, wait=self._wait, backoff=self._backoff).start()
            self._watches[service] = found
        return found

    async def stop(self) -> None:
        """End every watch, and with them every WatchConfig stream."""
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await watch.stop()

    def _drop_idle(self) -> None:
        cutoff = time.monotonic() - self._settings.idle_timeout
        for service, watch in list(self._watches.items()):
            if watch.subscribers == 0 and watch.last_used < cutoff:
                del self._watches[service]
                watch.cancel()
