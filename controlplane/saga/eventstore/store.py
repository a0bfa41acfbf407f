"""An append-only event store on Consul KV: streams of events, snapshots, and subscriptions.

Key layout under the prefix (default `controlplane/saga/`):

    heads/<stream>              {"version": n, "snapshot": s}   one per stream; every append CASes it
    events/<stream>/<n:010d>    {"type", "at", "data"}          event n of the stream, written once
    snapshots/<stream>          {"version": s, "state": {...}}  the caller's state at version s

An append is one transaction: `cas` on the head at the ModifyIndex the writer last saw (index 0 when
the stream must not exist yet), `set` of the new event keys, optionally the snapshot, plus any extra
operations the caller adds (read models, locks) so that they change atomically with the events.
Two writers can therefore never both extend the same version: the second CAS fails and its append
raises ConflictError. Events are never rewritten; snapshots are a cache of the fold, rebuildable.

Subscriptions are pushed. A stream this process appended to recently is followed in process: each
append wakes its subscribers with the events it just wrote, so following a saga costs Consul nothing.
Any other stream is followed with Consul blocking queries (one shared BlockingQueryWatch per key) on
`heads/<stream>`; the subscription switches between the two as the writer moves. (Consul 1.8 keeps an
abandoned blocking query, and its connection, open until its wait ends, and refuses a client more than
200 connections: one long poll per finished saga watch would exhaust that under load.)
Across streams, `subscribe_all` follows the `heads/` prefix, where an event's position is the Consul
index of the transaction that wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ConflictError, DomainError
from controlplane.saga.eventstore.group_commit import GroupCommitter
from controlplane.saga.eventstore.model import Event, RecordedEvent, StreamHead, StreamSlice
from controlplane.saga.eventstore.txn import (
    MAX_OPS,
    Op,
    cas_op,
    decode,
    delete_op,
    delete_tree_op,
    get_op,
    run_txn,
    set_op,
)
from controlplane.watch import Backoff, BlockingQueryWatch, FairSlots

HEAD_CACHE_SIZE = 50_000
RECENT_EVENTS = 32  # events kept in memory per subscribed stream written here, so subscribers need not read them
LOCAL_RECHECK = 1.0  # seconds a subscriber of a stream written here waits before checking where it stands
RANGE_READ_THRESHOLD = 256  # longer reads list the stream's prefix instead of getting keys one by one
# Consul takes a transaction body of at most 512 KiB; a snapshot larger than this (base64) is not written.
MAX_SNAPSHOT_VALUE = 320 * 1024

log = logging.getLogger(__name__)


class EventStoreError(DomainError):
    """The store's keys are not as the layout promises (e.g. a missing event); a bug or manual edit."""


class EventStore:
    """Streams of events in Consul KV. `client` serves short requests, `blocking_client` long polls."""

    def __init__(
        self,
        client: consul.aio.Consul,
        blocking_client: consul.aio.Consul,
        committer: GroupCommitter,
        prefix: str = "controlplane/saga/",
        *,
        watch_wait: float = 30.0,
        stream_watch_wait: float = 2.0,
        backoff: Backoff | None = None,
        local_window: float = 10.0,
        max_watches: int = 128,
    ) -> None:
        self._consul = client
        self._blocking = blocking_client
        self._committer = committer
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._watch_wait = watch_wait
        # One stream's watch ends with its subscribers (a saga's, when it ends), and Consul 1.8 does not notice
        # that a client gave up a blocking query: the connection stays open, and counts against the agent's
        # connections per client (limits.http_max_conns_per_client, 200), until the query's wait runs out. A
        # short wait keeps ended watches from filling that budget, which the event store's writes share.
        self._stream_watch_wait = stream_watch_wait
        # At most this many of those queries open at once; the others wait their turn (see FairSlots).
        self._slots = FairSlots(max_watches)
        self._backoff = backoff or Backoff()
        # A stream appended to here within this many seconds is followed in process.
        self._local_window = local_window
        self._heads: OrderedDict[str, StreamHead] = OrderedDict()
        self._watches: dict[str, tuple[BlockingQueryWatch[Any], list[int]]] = {}
        # Streams this process appended to (when, oldest first), and who waits for more of them.
        self._written: OrderedDict[str, float] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # The latest events of streams someone here subscribes to (how many subscribers each), so a
        # subscriber gets what was just appended without asking Consul. Only those: kept for every
        # stream, they would pile up and make each full garbage collection (and so tail latency) worse.
        self._subscribers: Counter[str] = Counter()
        self._recent: dict[str, list[RecordedEvent]] = {}

    # -- layout ---------------------------------------------------------------------------------

    def head_key(self, stream: str) -> str:
        return f"{self.prefix}heads/{stream}"

    def event_key(self, stream: str, version: int) -> str:
        return f"{self.prefix}events/{stream}/{version:010d}"

    def snapshot_key(self, stream: str) -> str:
        return f"{self.prefix}snapshots/{stream}"

    def removal_ops(self, stream: str) -> list[Op]:
        """The operations that delete a stream: its head, events and snapshot (for retention)."""
        return [delete_op(self.head_key(stream)), delete_tree_op(f"{self.prefix}events/{stream}/"),
                delete_op(self.snapshot_key(stream))]

    # -- writing --------------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        snapshot: dict[str, Any] | None = None,
        extra_ops: Iterable[Op] = (),
    ) -> StreamHead:
        """Append `events` after version `expected_version` (0: create the stream); the new head.

        `snapshot`, when given, is the caller's state after these events. Raises ConflictError when the
        stream is not at `expected_version` or an extra operation's check fails; ConsulUnavailable when
        Consul did not answer (the append may or may not have happened: re-read before retrying).
        """
        if not events:
            raise ValueError("append needs at least one event")
        extra = list(extra_ops)
        if expected_version == 0:
            head_index, snapshot_version = 0, 0
        else:
            head = self._heads.get(stream)
            if head is None or head.version != expected_version:
                head = await self.head(stream)
            if head is None or head.version != expected_version:
                found = head.version if head else 0
                raise ConflictError(f"stream {stream} is at version {found}, not {expected_version}")
            head_index, snapshot_version = head.modify_index, head.snapshot_version
        version = expected_version + len(events)
        snapshot_op = None
        if snapshot is not None:
            snapshot_op = set_op(self.snapshot_key(stream), {"version": version, "state": snapshot})
            if len(snapshot_op["KV"]["Value"]) > MAX_SNAPSHOT_VALUE:
                # A snapshot is a cache of the fold: without it the append still fits in a transaction, and
                # loading reads the events since the last one that did.
                log.warning("stream %s: the snapshot at version %d is %d bytes encoded, more than a transaction "
                            "carries beside the events; not written", stream, version, len(snapshot_op["KV"]["Value"]))
                snapshot_op = None
            else:
                snapshot_version = version
        ops = [cas_op(self.head_key(stream), {"version": version, "snapshot": snapshot_version}, head_index)]
        ops += [set_op(self.event_key(stream, expected_version + i + 1), e.to_json()) for i, e in enumerate(events)]
        if snapshot_op is not None:
            ops.append(snapshot_op)
        ops += extra
        if len(ops) > MAX_OPS:
            raise ValueError(f"append of {len(events)} events needs {len(ops)} operations; Consul allows {MAX_OPS}")
        try:
            results = await self._committer.submit(ops)
        except BaseException:
            # A conflict means another writer; any other failure leaves the outcome unknown. Either
            # way the next append re-reads the head, and subscribers look in Consul.
            self._heads.pop(stream, None)
            self._forget_written(stream)
            raise
        position = int(results[0]["ModifyIndex"])
        new_head = StreamHead(version, snapshot_version, position)
        self._heads[stream] = new_head
        self._heads.move_to_end(stream)
        self._publish(stream, [RecordedEvent(stream, expected_version + i + 1, e, position)
                               for i, e in enumerate(events)])
        while len(self._heads) > HEAD_CACHE_SIZE:
            self._heads.popitem(last=False)
        return new_head

    def _remember(self, stream: str, head: StreamHead) -> None:
        """Cache a head read from Consul, unless a newer one is known (a read may race an append)."""
        known = self._heads.get(stream)
        if known is None or head.version > known.version:
            self._heads[stream] = head
            self._heads.move_to_end(stream)

    # -- in-process fan-out of this process's appends ------------------------------------------

    def _publish(self, stream: str, recorded: list[RecordedEvent]) -> None:
        now = time.monotonic()
        written = self._written
        written[stream] = now
        written.move_to_end(stream)
        if stream in self._subscribers:
            recent = self._recent.get(stream)
            self._recent[stream] = (recent + recorded)[-RECENT_EVENTS:] if recent else recorded
        while written:  # streams not written for `local_window` are followed in Consul again...
            old, at = next(iter(written.items()))
            if now - at < self._local_window and len(written) <= HEAD_CACHE_SIZE:
                break
            del written[old]
            self._heads.pop(old, None)  # ...and mostly ended: the next append, if any, reads the head
        self._wake(stream)

    def _forget_written(self, stream: str) -> None:
        self._written.pop(stream, None)
        self._recent.pop(stream, None)
        self._wake(stream)

    def _wake(self, stream: str) -> None:
        for waiter in self._waiters.pop(stream, []):
            if not waiter.done():
                waiter.set_result(None)

    def written_here(self, stream: str) -> bool:
        """Whether this process appended to `stream` within the last `local_window` seconds."""
        at = self._written.get(stream)
        return at is not None and time.monotonic() - at < self._local_window

    async def _next_local_change(self, stream: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.setdefault(stream, []).append(waiter)
        timer = loop.call_later(timeout, _settle, waiter)  # cheaper than asyncio.wait_for's task
        try:
            await waiter
        finally:
            timer.cancel()
            waiters = self._waiters.get(stream)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[stream]

    # -- reading --------------------------------------------------------------------------------

    async def head(self, stream: str) -> StreamHead | None:
        """The stream's head as Consul has it now, or None when the stream does not exist."""
        _, entry = await consul_call(self._consul.kv.get(self.head_key(stream)), what=f"head of {stream}")
        head = _head_from(entry)
        if head is not None:
            self._remember(stream, head)
        return head

    async def read(self, stream: str, from_version: int = 0, to_version: int | None = None) -> list[RecordedEvent]:
        """Events with from_version < version <= to_version (default: up to the head), in order."""
        if to_version is None:
            head = await self.head(stream)
            to_version = head.version if head else 0
        if to_version <= from_version:
            return []
        recent = self._recent.get(stream)
        if recent and recent[0].version <= from_version + 1 and recent[-1].version >= to_version:
            return [e for e in recent if from_version < e.version <= to_version]
        if to_version - from_version > RANGE_READ_THRESHOLD:
            return await self._read_range(stream, from_version, to_version)
        keys = [self.event_key(stream, v) for v in range(from_version + 1, to_version + 1)]
        entries = await self._get_many(keys)
        return [_recorded(stream, from_version + 1 + i, entry) for i, entry in enumerate(entries)]

    async def _read_range(self, stream: str, from_version: int, to_version: int) -> list[RecordedEvent]:
        _, entries = await consul_call(
            self._consul.kv.get(f"{self.prefix}events/{stream}/", recurse=True), what=f"events of {stream}"
        )
        found = []
        for entry in entries or []:
            version = int(entry["Key"].rsplit("/", 1)[1])
            if from_version < version <= to_version:
                found.append(_recorded(stream, version, entry))
        found.sort(key=lambda e: e.version)
        if len(found) != to_version - from_version:
            raise EventStoreError(f"stream {stream}: events {from_version + 1}..{to_version} are incomplete")
        return found

    async def load(self, stream: str) -> StreamSlice | None:
        """Head, latest snapshot and the events after it: a bounded read, whatever the stream's length."""
        for _ in range(10):
            head = await self.head(stream)
            if head is None:
                return None
            keys = [self.snapshot_key(stream)] if head.snapshot_version else []
            keys += [self.event_key(stream, v) for v in range(head.snapshot_version + 1, head.version + 1)]
            entries = await self._get_many(keys)
            snapshot = None
            if head.snapshot_version:
                raw = decode(entries.pop(0).get("Value"))
                if raw["version"] != head.snapshot_version:
                    continue  # a newer append replaced the snapshot meanwhile: read again
                snapshot = raw["state"]
            events = [_recorded(stream, head.snapshot_version + 1 + i, e) for i, e in enumerate(entries)]
            return StreamSlice(head, snapshot, events)
        raise ConflictError(f"stream {stream} kept changing while it was read")

    async def heads(self) -> dict[str, StreamHead]:
        """Every stream's head (for rebuilding read models)."""
        _, entries = await consul_call(self._consul.kv.get(f"{self.prefix}heads/", recurse=True), what="heads")
        return _heads_from(entries, self.prefix)

    async def _get_many(self, keys: list[str]) -> list[dict[str, Any]]:
        chunks = [keys[i:i + MAX_OPS] for i in range(0, len(keys), MAX_OPS)]
        answers = await asyncio.gather(*(run_txn(self._consul, [get_op(k) for k in chunk]) for chunk in chunks))
        entries: list[dict[str, Any]] = []
        for answer in answers:
            if not answer.ok:
                raise EventStoreError("; ".join(e.what for e in answer.errors))
            entries += answer.results
        return entries

    # -- subscriptions --------------------------------------------------------------------------

    async def subscribe(self, stream: str, from_version: int = 0) -> AsyncIterator[RecordedEvent]:
        """Every event after `from_version`, then each new one as it is appended, until cancelled
        (or closed: use `contextlib.aclosing` when leaving early)."""
        last = from_version
        self._subscribers[stream] += 1
        try:
            while True:
                if self.written_here(stream):
                    head = self._heads.get(stream)
                    if head is not None and head.version > last:
                        for recorded in await self.read(stream, last, head.version):
                            yield recorded
                            last = recorded.version
                        continue
                    await self._next_local_change(stream, LOCAL_RECHECK)
                    continue
                async for recorded in self._follow_in_consul(stream, last):
                    yield recorded
                    last = recorded.version
        finally:
            self._subscribers[stream] -= 1
            if self._subscribers[stream] <= 0:
                del self._subscribers[stream]
                self._recent.pop(stream, None)

    async def _follow_in_consul(self, stream: str, last: int) -> AsyncIterator[RecordedEvent]:
        """Events after `last` as Consul reports them, until this process starts writing the stream."""
        key = self.head_key(stream)

        async def fetch(index: int, wait: float) -> tuple[int, StreamHead | None]:
            new_index, entry = await consul_call(
                self._blocking.kv.get(key, index=index or None, wait=_ms(wait)), what=f"watch {stream}"
            )
            return int(new_index), _head_from(entry)

        async with self._watch(key, fetch, self._stream_watch_wait) as watch, \
                contextlib.aclosing(watch.subscribe()) as updates:
            async for snapshot in updates:
                head = snapshot.value
                if head is not None and head.version > last:
                    for recorded in await self.read(stream, last, head.version):
                        yield recorded
                        last = recorded.version
                if self.written_here(stream):
                    return

    async def subscribe_all(
        self, from_position: int = 0, types: Iterable[str] | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Events of every stream written after Consul index `from_position`, optionally only `types`.

        Ordered by position; within one transaction by stream and version. Each change lists the
        stream heads, so the cost grows with the number of streams (see docs/saga.md).
        """
        wanted = set(types) if types is not None else None
        prefix = f"{self.prefix}heads/"

        async def fetch(index: int, wait: float) -> tuple[int, dict[str, StreamHead]]:
            new_index, entries = await consul_call(
                self._blocking.kv.get(prefix, recurse=True, index=index or None, wait=_ms(wait)), what="watch heads"
            )
            return int(new_index), _heads_from(entries, self.prefix)

        known: dict[str, int] | None = None
        position = from_position
        async with self._watch(prefix, fetch, self._watch_wait) as watch, \
                contextlib.aclosing(watch.subscribe()) as updates:
            async for snapshot in updates:
                heads = snapshot.value or {}
                batch: list[RecordedEvent] = []
                for stream, head in heads.items():
                    seen = known.get(stream, 0) if known is not None else 0
                    if known is None and head.modify_index <= from_position:
                        continue
                    if head.version > seen:
                        batch += [e for e in await self.read(stream, seen, head.version) if e.position > position]
                known = {stream: head.version for stream, head in heads.items()}
                batch.sort(key=lambda e: (e.position, e.stream, e.version))
                for recorded in batch:
                    if wanted is None or recorded.event.type in wanted:
                        yield recorded
                position = max([position, *(e.position for e in batch)])

    @contextlib.asynccontextmanager
    async def _watch(self, key: str, fetch: Any, wait: float) -> AsyncIterator[BlockingQueryWatch[Any]]:
        """A shared blocking-query watch of `key`, stopped when its last user leaves."""
        found = self._watches.get(key)
        if found is None:
            watch: BlockingQueryWatch[Any] = BlockingQueryWatch(
                f"saga {key}", fetch, wait=wait, backoff=self._backoff, slots=self._slots
            ).start()
            found = self._watches[key] = (watch, [0])
        watch, users = found
        users[0] += 1
        try:
            yield watch
        finally:
            users[0] -= 1
            if users[0] == 0 and self._watches.get(key) is found:
                del self._watches[key]
                watch.cancel()

    async def stop(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for watch, _ in watches:
            await watch.stop()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _ms(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}ms"


def _head_from(entry: dict[str, Any] | None) -> StreamHead | None:
    if not entry or entry.get("Value") is None:
        return None
    raw = decode(entry["Value"])  # base64 text from a transaction, bytes from a KV read
    return StreamHead(int(raw["version"]), int(raw.get("snapshot", 0)), int(entry["ModifyIndex"]))


def _heads_from(entries: list[dict[str, Any]] | None, prefix: str) -> dict[str, StreamHead]:
    found = {}
    for entry in entries or []:
        head = _head_from(entry)
        if head is not None:
            found[entry["Key"].removeprefix(f"{prefix}heads/")] = head
    return found


def _recorded(stream: str, version: int, entry: dict[str, Any]) -> RecordedEvent:
    raw = decode(entry.get("Value"))
    return RecordedEvent(stream, version, Event.from_json(raw), int(entry.get("CreateIndex", 0)))
