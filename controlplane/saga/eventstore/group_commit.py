"""Group commit: the appends of many concurrent streams share one Consul transaction.

Consul takes one Raft write per request, so one request per transition would cap the orchestrator at
Consul's write rate. Instead a writer collects pending appends for `window` seconds (or until
`max_ops` operations are waiting), sends them as one /v1/txn, and acknowledges each append only after
Consul has committed it.

A transaction is all-or-nothing, but a conflicting append must fail alone. Consul reports every
failed operation by index; the appends owning those operations fail with ConflictError and the rest are
sent again together (each append is owned by one driver, so conflicts are rare and this costs one
extra round trip). When Consul rejects a batch without saying which operation (e.g. too large), every
append is retried on its own, so each gets its own answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.errors import ConflictError
from controlplane.saga.eventstore.txn import MAX_OPS, Op, TxnRejected, TxnResult, result_count

log = logging.getLogger(__name__)

RunTxn = Callable[[Sequence[Op]], Awaitable[TxnResult]]


@dataclass
class _Member:
    ops: list[Op]
    done: asyncio.Future[list[dict[str, Any]]]


@dataclass
class CommitStats:
    """Counters for benchmarks and tests."""

    transactions: int = 0
    appends: int = 0
    ops: int = 0
    conflicts: int = 0
    isolations: int = 0  # batches re-sent after a refusal
    batch_sizes: list[int] = field(default_factory=list)


class GroupCommitter:
    """Batches independent KV operation lists into Consul transactions."""

    def __init__(self, run: RunTxn, *, window: float = 0.002, max_ops: int = 60, max_inflight: int = 4) -> None:
        if not 1 <= max_ops <= MAX_OPS:
            raise ValueError(f"max_ops must be 1..{MAX_OPS}, got {max_ops}")
        self._run = run
        self._window = window
        self._max_ops = max_ops
        self._pending: deque[_Member] = deque()
        self._pending_ops = 0
        self._arrived = asyncio.Event()
        self._flush: asyncio.Future[None] | None = None  # resolved when the window ends or a batch is full
        self._slots = asyncio.Semaphore(max_inflight)
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats = CommitStats()

    def start(self) -> GroupCommitter:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._writer(), name="saga-group-commit")
        return self

    async def stop(self) -> None:
        """Stop taking batches; appends still waiting fail with CancelledError."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        while self._pending:
            member = self._pending.popleft()
            if not member.done.done():
                member.done.cancel()

    async def submit(self, ops: list[Op]) -> list[dict[str, Any]]:
        """Commit `ops` atomically (with other appends); their KV results once Consul has them
        (one per operation, in order, except deletes, which have none).

        Raises ConflictError when one of `ops` failed (e.g. a stale CAS index), ConsulUnavailable when
        Consul could not be reached (the operations may or may not have been applied).
        """
        if len(ops) > MAX_OPS:
            raise ValueError(f"an append may carry at most {MAX_OPS} operations, got {len(ops)}")
        if self._task is None:
            raise RuntimeError("group committer not started")
        member = _Member(ops, asyncio.get_running_loop().create_future())
        self._pending.append(member)
        self._pending_ops += len(ops)
        self._arrived.set()
        if self._pending_ops >= self._max_ops:
            _settle(self._flush)
        return await member.done

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            if self._window > 0 and self._pending_ops < self._max_ops:
                # A future and a timer rather than asyncio.wait_for, which costs a task per batch.
                flush = self._flush = loop.create_future()
                timer = loop.call_later(self._window, _settle, flush)
                try:
                    await flush
                finally:
                    timer.cancel()
                    self._flush = None
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._commit_and_release(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _take(self) -> list[_Member]:
        batch: list[_Member] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0].ops) <= self._max_ops):
            member = self._pending.popleft()
            size += len(member.ops)
            self._pending_ops -= len(member.ops)
            if not member.done.done():  # its submitter may have been cancelled
                batch.append(member)
        if not self._pending:
            self._arrived.clear()
        return batch

    async def _commit_and_release(self, batch: list[_Member]) -> None:
        try:
            await self._commit(batch)
        finally:
            self._slots.release()

    async def _commit(self, batch: list[_Member]) -> None:
        ops = [op for member in batch for op in member.ops]
        self.stats.transactions += 1
        self.stats.batch_sizes.append(len(batch))
        try:
            result = await self._run(ops)
        except TxnRejected as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            self.stats.isolations += 1
            await asyncio.gather(*(self._commit([member]) for member in batch))
            return
        except Exception as exc:  # ConsulUnavailable and anything unexpected: every member learns of it
            for member in batch:
                _fail(member, exc)
            return
        if result.ok:
            self.stats.appends += len(batch)
            self.stats.ops += len(ops)
            offset = 0
            for member in batch:
                count = result_count(member.ops)
                _resolve(member, result.results[offset:offset + count])
                offset += count
            return
        failed = self._owners(batch, {e.op_index: e.what for e in result.errors})
        if not failed:  # Consul did not say which operation failed: ask for each append alone
            if len(batch) == 1:
                _fail(batch[0], ConflictError(_describe(result)))
                return
            self.stats.isolations += 1
            await asyncio.gather(*(self._commit([member]) for member in batch))
            return
        rest = []
        for i, member in enumerate(batch):
            if i in failed:
                self.stats.conflicts += 1
                _fail(member, ConflictError(failed[i]))
            else:
                rest.append(member)
        if rest:
            self.stats.isolations += 1
            await self._commit(rest)

    @staticmethod
    def _owners(batch: list[_Member], errors: dict[int, str]) -> dict[int, str]:
        """Members owning a failed operation -> what Consul said failed."""
        owners: dict[int, str] = {}
        start = 0
        for i, member in enumerate(batch):
            end = start + len(member.ops)
            hit = [what for j, what in sorted(errors.items()) if start <= j < end]
            if hit:
                owners[i] = "concurrent change: " + "; ".join(hit)
            start = end
        return owners


def _settle(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _describe(result: TxnResult) -> str:
    return "; ".join(e.what for e in result.errors) or "Consul refused the transaction"


def _resolve(member: _Member, results: list[dict[str, Any]]) -> None:
    if not member.done.done():
        member.done.set_result(results)


def _fail(member: _Member, exc: BaseException) -> None:
    if not member.done.done():
        member.done.set_exception(exc)
