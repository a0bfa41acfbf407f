"""One blocking query per watched service feeds every stream of that service (no Consul, a fake store)."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.config.model import Layer, ServiceState
from controlplane.config.settings import ConfigSettings
from controlplane.config.watches import ConfigWatches
from controlplane.watch import Backoff


class BlockingStore:
    """Answers the first load at once and each later one when the test publishes a new state."""

    def __init__(self) -> None:
        self.loads: list[tuple[str, int]] = []
        self.published: asyncio.Queue[ServiceState] = asyncio.Queue()

    async def load(self, service: str, index: int = 0, wait: float = 0.0) -> tuple[int, ServiceState]:
        self.loads.append((service, index))
        if index == 0:
            return 1, ServiceState(service)
        state = await self.published.get()
        return index + 1, state


def test_every_subscriber_of_a_service_follows_one_blocking_query():
    async def scenario() -> None:
        store = BlockingStore()
        watches = ConfigWatches(store, ConfigSettings(), blocking_wait=30, backoff=Backoff())  # type: ignore[arg-type]
        assert watches.watch("payment") is watches.watch("payment")
        streams: list[Any] = [watches.watch("payment").subscribe() for _ in range(25)]
        assert [(await anext(s)).value for s in streams] == [ServiceState("payment")] * 25

        changed = ServiceState("payment", {"": Layer("", {"pool": 9}, 1, "ops", 0.0)}, head=1)
        await store.published.put(changed)
        assert [(await anext(s)).value for s in streams] == [changed] * 25
        assert [index for service, index in store.loads] == [0, 1, 2]  # the first read, then one query per change
        await watches.stop()

    asyncio.run(scenario())
