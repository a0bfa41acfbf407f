"""Whether Consul can serve this replica now, as its probe last found: one flag every watch follows.

A blocking query that hangs (Consul paused, no leader) says nothing until its wait runs out; a probe
with a short timeout says within a second. Watches mark their value stale the moment the probe finds
Consul unable to serve, and ask again at once (not as a blocking query at the old index, which would
wait out its whole wait for unchanged data) the moment it can again.
"""

from __future__ import annotations

import asyncio


class Reachability:
    """A flag with waits for both of its changes; starts up (reachable)."""

    def __init__(self) -> None:
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._up.set()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def set(self, up: bool) -> None:
        if up == self.up:
            return
        if up:
            self._down.clear()
            self._up.set()
        else:
            self._up.clear()
            self._down.set()

    async def wait_up(self) -> None:
        await self._up.wait()

    async def wait_down(self) -> None:
        await self._down.wait()
