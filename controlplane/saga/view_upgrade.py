"""Which read models the saga data in Consul has, and the upgrade that adds a newer one to older data.

The views (sagas by status for ListSagas, the index of ended sagas that retention sweeps) are written by
the transactions that change a saga, so a saga recorded before a view existed, by an older release, is
missing from it: ListSagas would not list it, and an ended saga without a slot entry would never be
removed. `views/version` under the prefix says which views the data has (absent: none known). A replica
that finds it behind the code's `VIEWS_VERSION` claims the upgrade with a compare-and-set, rebuilds the
views from the streams while it serves (`SagasByStatus.rebuild`, each saga's fix checked against its
head), and moves the version on with another compare-and-set. A claim older than `claim_ttl` (its
replica died) is taken over; two upgrades at once write the same keys (unless the replicas were given
other retentions: then a saga may get two slot entries, a minute apart at most).

The claim's write is also a barrier: a saga whose head moved after it was written by this release,
which writes every view itself, so only sagas whose head is older get the entries they lack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ConsulUnavailable
from controlplane.saga.eventstore import EventStore, StreamSlice
from controlplane.saga.eventstore.txn import Op
from controlplane.saga.projections import SagasByStatus
from controlplane.saga.retention import EndedSagas
from controlplane.saga.state import SagaState
from controlplane.watch import Backoff

log = logging.getLogger(__name__)

VIEWS_VERSION = 2
"""1: sagas by status. 2: and the index of ended sagas that retention sweeps."""


class ViewUpgrade:
    """Brings the views of the data under a prefix up to `VIEWS_VERSION`, once, from any replica."""

    def __init__(self, client: consul.aio.Consul, store: EventStore, projection: SagasByStatus, ended: EndedSagas,
                 fold: Callable[[str, StreamSlice], SagaState], *, replica_id: str, claim_ttl: float = 900.0,
                 interval: float = 30.0, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._consul = client
        self._store = store
        self._projection = projection
        self._ended = ended
        self._fold = fold
        self._replica_id = replica_id
        self._claim_ttl = claim_ttl
        self._interval = interval
        self._backoff = backoff or Backoff(initial=0.05, maximum=1.0)
        self._clock = clock
        self.key = f"{store.prefix}views/version"

    async def run(self) -> None:
        """Until the data's views are current: look every `interval` (another replica may be upgrading)."""
        delay = self._backoff.initial
        while True:
            try:
                if await self.step():
                    return
                delay = self._backoff.initial
                await asyncio.sleep(self._interval)
            except ConsulUnavailable as exc:
                log.warning("upgrading the saga views failed: %s", exc)
                await asyncio.sleep(delay)
                delay = self._backoff.next(delay)

    async def step(self) -> bool:
        """One look, and the upgrade if it is ours to do; whether the views are current."""
        _, entry = await consul_call(self._consul.kv.get(self.key), what="read the views' version")
        stored = _parse(entry)
        version = stored.get("version", 0)
        if version >= VIEWS_VERSION:
            return True
        claim = stored.get("upgrading")
        if isinstance(claim, dict) and claim.get("by") != self._replica_id:
            at = claim.get("at")
            if isinstance(at, int | float) and self._clock() - at < self._claim_ttl:
                return False  # another replica is at it
        claimed = {"version": version, "upgrading": {"to": VIEWS_VERSION, "by": self._replica_id, "at": self._clock()}}
        cas = int(entry["ModifyIndex"]) if entry else 0
        if not await self._put(claimed, cas):
            return False  # someone else moved it: look again next time
        _, entry = await consul_call(self._consul.kv.get(self.key), what="read the views' version")
        if entry is None or _parse(entry) != claimed:
            return False
        barrier = int(entry["ModifyIndex"])
        log.info("saga views are at version %d, the code's at %d: rebuilding them from the streams",
                 version, VIEWS_VERSION)
        sagas = await self._upgrade(barrier)
        if not await self._put({"version": VIEWS_VERSION}, barrier):
            return False  # our claim was taken over (it went stale): the other upgrade finishes
        log.info("saga views upgraded to version %d (%d sagas)", VIEWS_VERSION, sagas)
        return True

    async def _upgrade(self, barrier: int) -> int:
        indexed = await self._ended.indexed()

        def slot_entry(state: SagaState, head_index: int) -> list[Op]:
            if head_index > barrier or state.saga_id in indexed:
                return []  # written by this release, which indexes it when it ends; or indexed already
            return self._ended.ops(None, state)

        return await self._projection.rebuild(self._store, self._fold, also=slot_entry)

    async def _put(self, value: dict[str, Any], cas: int) -> bool:
        return bool(await consul_call(self._consul.kv.put(self.key, json.dumps(value), cas=cas),
                                      what="write the views' version", write=True))


def _parse(entry: dict[str, Any] | None) -> dict[str, Any]:
    """The stored version record ({} when absent or not one this code writes)."""
    if not entry or not entry.get("Value"):
        return {}
    try:
        value = json.loads(entry["Value"])
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) and isinstance(value.get("version", 0), int) else {}
