"""Ended sagas are removed once their retention has passed, so Consul does not fill up with finished sagas.

Every saga's events, head, snapshot and read-model entry would otherwise stay in Consul for ever (at the
demo's rate, millions a day: Consul holds its whole KV store in memory). When a saga ends COMPLETED or
COMPENSATED, the transaction that records it also writes

    views/ended/<slot>/<saga_id>   the key of its by-status entry

where `slot` is the end of the time slot it ended in (Unix seconds, 12 digits; slots are `slot_seconds`
wide, from the retention). Each replica's sweeper lists the slots whose end is more than `retention`
ago, and removes each saga in them with one transaction per few sagas: its head, events, snapshot,
by-status entry and slot entry, checked against the slot entry's index, so that a saga removed by another
replica meanwhile (and a new saga started under its id since) is left alone. Sagas that end
NEEDS_ATTENTION are kept: they wait for an operator. StartSaga is idempotent by saga id for as long as
a saga is kept; after that, the id names a new saga.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ConsulUnavailable
from controlplane.saga.eventstore import EventStore
from controlplane.saga.eventstore.txn import MAX_OPS, Op, check_index_op, decode, delete_op, run_txn, set_op
from controlplane.saga.state import SagaState, SagaStatus
from controlplane.watch import Backoff

log = logging.getLogger(__name__)

SWEPT = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})
_OPS_PER_SAGA = 6  # check the slot entry; delete head, events, snapshot, by-status entry, slot entry
_SAGAS_PER_TXN = MAX_OPS // _OPS_PER_SAGA
MAX_SLOT = 60


def slot_seconds(retention: float) -> int:
    """How wide a time slot is: a hundredth of the retention, between 1 s and a minute (a minute when sagas
    are kept for ever, so turning retention on later finds their slots). A minute at 150 sagas/s is 9,000
    entries, a read of about 2 MB; a day of slots is 1,440 short keys."""
    if retention <= 0:
        return MAX_SLOT
    return int(min(MAX_SLOT, max(1, retention // 100)))


class EndedSagas:
    """The slot index of ended sagas, and the sweeper that removes them past their retention."""

    def __init__(self, client: consul.aio.Consul, store: EventStore, status_key: Callable[[SagaState], str], *,
                 retention: float, interval: float = 60.0, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._consul = client
        self._store = store
        self._status_key = status_key  # a saga's by-status entry (SagasByStatus.key)
        self._by_status = f"{store.prefix}views/by-status/"
        self.base = f"{store.prefix}views/ended/"
        self.retention = retention
        self._slot = slot_seconds(retention)
        self._interval = interval
        self._backoff = backoff or Backoff(initial=0.05, maximum=1.0)
        self._clock = clock

    def ops(self, before: SagaState | None, after: SagaState) -> list[Op]:
        """The slot entry a saga gets in the transaction that ends it, naming its by-status entry."""
        if after.status not in SWEPT or (before is not None and before.status == after.status):
            return []
        ended = after.updated_at or self._clock()
        slot = (int(ended) // self._slot + 1) * self._slot
        return [set_op(f"{self.base}{slot:012d}/{after.saga_id}", self._status_key(after))]

    async def indexed(self) -> set[str]:
        """The ids of the sagas that have a slot entry (for the upgrade that adds the missing ones)."""
        _, keys = await consul_call(self._consul.kv.get(self.base, keys=True), what="list ended sagas")
        return {key.rsplit("/", 1)[1] for key in keys or []}

    async def run(self) -> None:
        """Sweep every `interval` seconds, for as long as the task runs."""
        delay = self._backoff.initial
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("removed %d ended sagas older than %.0f s", removed, self.retention)
                delay = self._backoff.initial
                # Replicas sweep the same slots: apart in time, one mostly finds the other's work done.
                await asyncio.sleep(self._interval * random.uniform(0.5, 1.5))
            except ConsulUnavailable as exc:
                log.warning("sweeping ended sagas failed: %s", exc)
                await asyncio.sleep(delay)
                delay = self._backoff.next(delay)

    async def sweep(self) -> int:
        """Remove the sagas of every slot past the retention; how many were removed."""
        if self.retention <= 0:
            return 0
        _, slots = await consul_call(self._consul.kv.get(self.base, keys=True, separator="/"), what="list ended slots")
        cutoff = self._clock() - self.retention
        removed = 0
        for slot_key in sorted(slots or []):
            name = slot_key.removeprefix(self.base).rstrip("/")
            if not (name.isascii() and name.isdigit() and len(name) == 12):
                continue  # not a slot ops() writes
            if int(name) > cutoff:
                break  # not old enough yet, and (12 digits, sorted) neither are the rest
            removed += await self._sweep_slot(slot_key)
        return removed

    async def _sweep_slot(self, slot_key: str) -> int:
        _, entries = await consul_call(self._consul.kv.get(slot_key, recurse=True), what="list ended sagas")
        removed = 0
        entries = entries or []
        for i in range(0, len(entries), _SAGAS_PER_TXN):
            chunk = entries[i:i + _SAGAS_PER_TXN]
            if (await run_txn(self._consul, [op for entry in chunk for op in self._removal(entry)])).ok:
                removed += len(chunk)
                continue
            for entry in chunk:  # one of them was removed meanwhile: the others one at a time
                if (await run_txn(self._consul, self._removal(entry))).ok:
                    removed += 1
        return removed

    def _removal(self, entry: dict[str, Any]) -> list[Op]:
        """One saga's removal, checked against its slot entry (gone: removed meanwhile by another replica)."""
        saga_id = entry["Key"].rsplit("/", 1)[1]
        ops = [check_index_op(entry["Key"], int(entry["ModifyIndex"])), *self._store.removal_ops(saga_id)]
        try:
            status_key = decode(entry.get("Value"))
        except ValueError:  # not JSON: not written by ops(); the saga goes, its by-status entry is left
            status_key = None
        if isinstance(status_key, str) and status_key.startswith(self._by_status):
            ops.append(delete_op(status_key))
        ops.append(delete_op(entry["Key"]))
        return ops
