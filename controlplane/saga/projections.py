"""Read models built from saga events. "Sagas by status" serves ListSagas without reading any stream.

Key layout under the prefix:

    views/by-status/<status>/<definition>/<saga_id>   {"saga_id", "definition_name", ..., "status"}

The keys change in the same transaction as the events that change a saga's status, so the view is
never behind the streams; `rebuild()` recomputes it from the streams alone (after a bug, or to add a
view to existing data: `view_upgrade.py` runs it when the data's views are older than the code's).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ValidationError
from controlplane.saga.eventstore import EventStore, StreamSlice
from controlplane.saga.eventstore.txn import (
    MAX_OPS,
    Op,
    check_absent_op,
    check_index_op,
    decode,
    delete_op,
    get_op,
    run_txn,
    set_op,
)
from controlplane.saga.state import SagaState, SagaStatus

log = logging.getLogger(__name__)

STATUS_NAMES = {
    SagaStatus.RUNNING: "running",
    SagaStatus.COMPENSATING: "compensating",
    SagaStatus.COMPLETED: "completed",
    SagaStatus.COMPENSATED: "compensated",
    SagaStatus.NEEDS_ATTENTION: "needs_attention",
}
MAX_PAGE = 500
DEFAULT_PAGE = 100


def summary(state: SagaState) -> dict[str, Any]:
    """What the view keeps of a saga: enough to list it, not its steps."""
    return {
        "saga_id": state.saga_id,
        "definition_name": state.definition_name,
        "definition_version": state.definition_version,
        "status": int(state.status),
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "trace_id": state.trace_id,
    }


class SagasByStatus:
    """The "sagas by status" read model."""

    def __init__(self, client: consul.aio.Consul, prefix: str) -> None:
        self._consul = client
        self.base = f"{prefix}views/by-status/"

    def key(self, state: SagaState) -> str:
        return f"{self.base}{STATUS_NAMES[state.status]}/{state.definition_name}/{state.saga_id}"

    def ops(self, before: SagaState | None, after: SagaState) -> list[Op]:
        """The view's changes when a saga goes from `before` (None: new) to `after`."""
        if before is not None and before.status == after.status:
            return []
        ops = [delete_op(self.key(before))] if before is not None else []
        return [*ops, set_op(self.key(after), summary(after))]

    async def list(
        self, status: SagaStatus | None, definition: str, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of summaries ordered by (status, definition, saga id), and the next page's token."""
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        prefix = self.base
        if status is not None:
            prefix += f"{STATUS_NAMES[status]}/" + (f"{definition}/" if definition else "")
        _, keys = await consul_call(self._consul.kv.get(prefix, keys=True), what="list sagas")
        keys = sorted(k for k in keys or [] if not definition or k.removeprefix(self.base).split("/")[1] == definition)
        if page_token:
            after = _token_key(page_token)
            keys = [k for k in keys if k.removeprefix(self.base) > after]
        page, more = keys[:size], len(keys) > size
        entries: list[dict[str, Any]] = []
        for i in range(0, len(page), MAX_OPS):
            answer = await run_txn(self._consul, [get_op(k) for k in page[i:i + MAX_OPS]])
            if answer.ok:
                entries += answer.results
            else:  # a saga changed status between listing and reading: read what is still there
                for key in page[i:i + MAX_OPS]:
                    _, entry = await consul_call(self._consul.kv.get(key), what="read saga summary")
                    if entry:
                        entries.append(entry)
        summaries = [decode(e["Value"]) for e in entries if e.get("Value")]
        next_token = _token(page[-1].removeprefix(self.base)) if more else ""
        return summaries, next_token

    async def rebuild(
        self, store: EventStore, fold: Callable[[str, StreamSlice], SagaState], concurrency: int = 8,
        also: Callable[[SagaState, int], list[Op]] | None = None,
    ) -> int:
        """Recompute the view from the streams; returns how many sagas it lists.

        Each saga's keys are fixed in a transaction that checks its head did not move meanwhile, and an
        entry whose saga has no head is removed only while the head is still absent, so a rebuild may run
        while sagas start and progress. `also(state, head_index)` adds operations of other views to each
        saga's transaction.
        """
        heads = await store.heads()
        _, keys = await consul_call(self._consul.kv.get(self.base, keys=True), what="list view keys")
        existing: dict[str, list[str]] = {}
        for key in keys or []:
            existing.setdefault(key.rsplit("/", 1)[1], []).append(key)
        gate = asyncio.Semaphore(concurrency)

        async def fix(saga_id: str) -> None:
            async with gate:
                await self._fix_one(store, fold, saga_id, existing.get(saga_id, []), also)

        await asyncio.gather(*(fix(saga_id) for saga_id in heads))
        for saga_id, orphans in existing.items():
            if saga_id not in heads:  # listed after the heads: it may have started since
                await run_txn(self._consul, [check_absent_op(store.head_key(saga_id)),
                                             *(delete_op(k) for k in orphans)])
        return len(heads)

    async def _fix_one(
        self, store: EventStore, fold: Callable[[str, StreamSlice], SagaState], saga_id: str, keys: list[str],
        also: Callable[[SagaState, int], list[Op]] | None,
    ) -> None:
        for _ in range(10):
            found = await store.load(saga_id)
            if found is None:
                return
            state = fold(saga_id, found)
            wanted = self.key(state)
            ops = [check_index_op(store.head_key(saga_id), found.head.modify_index)]
            ops += [delete_op(k) for k in keys if k != wanted]
            ops.append(set_op(wanted, summary(state)))
            if also is not None:
                ops += also(state, found.head.modify_index)
            if (await run_txn(self._consul, ops)).ok:
                return
            keys = [*keys, wanted]
        log.warning("rebuild: saga %s kept changing; its view entry is left as the appends wrote it", saga_id)


def status_from_proto(value: int) -> SagaStatus | None:
    """None for SAGA_STATUS_UNSPECIFIED (no filter)."""
    if value == 0:
        return None
    try:
        return SagaStatus(value)
    except ValueError:
        raise ValidationError.single("status", f"unknown saga status {value}") from None


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _token_key(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (ValueError, UnicodeError):
        raise ValidationError.single("page_token", "not a token this service issued") from None
