"""Saga persistence: a saga's state is loaded by folding its stream and saved by appending events.

Each append carries, in the same Consul transaction, the read-model changes its events cause (and, when a
saga ends, its entry in the index of ended sagas that retention sweeps) and, every `snapshot_every`
events, a snapshot of the state, so loading reads a bounded number of keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controlplane.saga.eventstore import Event, EventStore, StreamSlice
from controlplane.saga.eventstore.txn import Op
from controlplane.saga.projections import SagasByStatus
from controlplane.saga.retention import EndedSagas
from controlplane.saga.state import SagaState, apply, evolve


def fold_slice(saga_id: str, found: StreamSlice) -> SagaState:
    """The state a stream's snapshot and later events describe."""
    state = SagaState.from_json(found.snapshot) if found.snapshot is not None else SagaState(saga_id)
    for recorded in found.events:
        apply(state, recorded.event)
    return state


class SagaRepository:
    def __init__(self, store: EventStore, projection: SagasByStatus, snapshot_every: int = 16,
                 ended: EndedSagas | None = None) -> None:
        self.store = store
        self.projection = projection
        self.ended = ended
        self._snapshot_every = max(1, snapshot_every)

    async def load(self, saga_id: str) -> SagaState | None:
        """The saga's current state, or None when it does not exist."""
        found = await self.store.load(saga_id)
        return fold_slice(saga_id, found) if found is not None else None

    async def append(
        self,
        saga_id: str,
        state: SagaState | None,
        events: Sequence[Event],
        *,
        extra_ops: Iterable[Op] = (),
        after: SagaState | None = None,
    ) -> SagaState:
        """Record `events` after `state` (None: create the saga); the state after them.

        `after`, when the caller has already folded the events, saves folding them again. Raises
        ConflictError when the stream moved past `state` (another writer, or an earlier attempt of this
        one whose answer was lost) and ConsulUnavailable when Consul did not answer.
        """
        before = state if state is not None else SagaState(saga_id)
        if after is None:
            after = evolve(before, events)
        every = self._snapshot_every
        snapshot = after.to_json() if after.version // every > before.version // every else None
        ops = [*self.projection.ops(state, after), *extra_ops]
        if self.ended is not None:
            ops += self.ended.ops(state, after)
        await self.store.append(saga_id, before.version, events, snapshot=snapshot, extra_ops=ops)
        return after
