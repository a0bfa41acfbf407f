"""Participant side of exactly-once effects: answer a repeated `idempotency-key` from the record.

The orchestrator sends a step again, with the same `idempotency-key` request metadata, whenever it
cannot know whether an earlier attempt took effect (a timeout, a crash of the control plane). A
participant decorates its handlers with `idempotent(store)`: the first call with a key runs the handler
and records its response; every later call with that key gets the recorded response back without
running the handler again.

Calls with different keys run concurrently; calls with the same key run one at a time, so a repeat that
arrives while the first call runs waits for it and gets its response. Failed calls are not recorded and
may be tried again.

Two ways to make the effect and its record agree after a crash:
- `SqliteIdempotencyStore(path, transactional=True)`: the handler runs inside the store's transaction; a
  handler that writes its own data through `store.connection` commits it atomically with the record, so
  even a participant that crashes mid-call never applies a step twice. SQLite has one writer, so such
  handlers run one at a time.
- the default: the record is written after the handler returns, in a short transaction of its own, and
  handlers run concurrently. A crash between the handler's own commit and the record means the step is
  run again, so the handler must itself be idempotent by its business key (reserving stock for an order
  that holds a reservation returns that reservation). That is the saga participant contract anyway.

    store = SqliteIdempotencyStore("inventory.db")

    class Inventory(inventory_pb2_grpc.InventoryServiceServicer):
        @idempotent(store)
        def Reserve(self, request, context):
            store.connection.execute("INSERT INTO reservations ...")
            return inventory_pb2.ReserveResponse(...)

(with `SqliteIdempotencyStore("inventory.db", transactional=True)` for the atomic kind).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from controlplane.names import shown

IDEMPOTENCY_KEY = "idempotency-key"

Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class Recorded:
    """The response a key was answered with, and a fingerprint of the request that produced it."""

    request_fingerprint: str
    response_type: str  # full protobuf message name
    response: bytes


class Claim(Protocol):
    recorded: Recorded | None

    def record(self, recorded: Recorded) -> None: ...


class IdempotencyStore(Protocol):
    """Records responses by (scope, key). `claim` holds the key exclusively until the block ends and
    commits the record (and whatever else the handler wrote in the transaction) when it ends normally."""

    def claim(self, scope: str, key: str) -> contextlib.AbstractContextManager[Claim]: ...


@dataclass
class _Claim:
    recorded: Recorded | None
    new: Recorded | None = None

    def record(self, recorded: Recorded) -> None:
        self.new = recorded


class KeyLocks:
    """One lock per key, held by the calls of that key only; a key's lock is dropped when no call holds it."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[tuple[str, str], list[Any]] = {}  # key -> [lock, holders and waiters]

    @contextlib.contextmanager
    def holding(self, key: tuple[str, str]) -> Iterator[None]:
        with self._mutex:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._mutex:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class SqliteIdempotencyStore:
    """Records in SQLite.

    transactional: run each keyed call inside the store's write transaction (`connection`), so what the
    handler writes there commits with the record; calls then run one at a time (also across processes
    sharing the file). Otherwise (the default) calls of different keys run concurrently and the record is
    written after the handler; see the module docstring for what each asks of the handler.
    """

    def __init__(self, path: str | Path = ":memory:", *, busy_timeout: float = 30.0,
                 transactional: bool = False) -> None:
        self.connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                          timeout=busy_timeout)
        self.transactional = transactional
        self._keys = KeyLocks()
        self._lock = threading.RLock()
        with self._lock:
            if str(path) != ":memory:":
                self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS idempotency_records ("
                " scope TEXT NOT NULL, key TEXT NOT NULL, request_fingerprint TEXT NOT NULL,"
                " response_type TEXT NOT NULL, response BLOB NOT NULL, PRIMARY KEY (scope, key))"
            )

    def claim(self, scope: str, key: str) -> contextlib.AbstractContextManager[Claim]:
        return self._claim_in_transaction(scope, key) if self.transactional else self._claim_by_key(scope, key)

    @contextlib.contextmanager
    def _claim_in_transaction(self, scope: str, key: str) -> Iterator[Claim]:
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                claim = _Claim(self._read(scope, key))
                yield claim
                if claim.new is not None:
                    self._write(scope, key, claim.new)
                self.connection.execute("COMMIT")
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _claim_by_key(self, scope: str, key: str) -> Iterator[Claim]:
        with self._keys.holding((scope, key)):
            with self._lock:
                claim = _Claim(self._read(scope, key))
            yield claim
            if claim.new is not None:
                with self._lock:
                    self.connection.execute("BEGIN IMMEDIATE")
                    try:
                        self._write(scope, key, claim.new)
                        self.connection.execute("COMMIT")
                    except BaseException:
                        self.connection.execute("ROLLBACK")
                        raise

    def _read(self, scope: str, key: str) -> Recorded | None:
        row = self.connection.execute(
            "SELECT request_fingerprint, response_type, response FROM idempotency_records WHERE scope = ? AND key = ?",
            (scope, key),
        ).fetchone()
        return Recorded(row[0], row[1], bytes(row[2])) if row else None

    def _write(self, scope: str, key: str, recorded: Recorded) -> None:
        # OR IGNORE: another process sharing the file may have recorded the key meanwhile; its record stands.
        self.connection.execute(
            "INSERT OR IGNORE INTO idempotency_records VALUES (?, ?, ?, ?, ?)",
            (scope, key, recorded.request_fingerprint, recorded.response_type, recorded.response),
        )

    def close(self) -> None:
        with self._lock:
            self.connection.close()


class MemoryIdempotencyStore:
    """Records in memory: for tests and participants whose effects are in memory too. Calls of different
    keys run concurrently."""

    def __init__(self) -> None:
        self._keys = KeyLocks()
        self._records: dict[tuple[str, str], Recorded] = {}

    @contextlib.contextmanager
    def claim(self, scope: str, key: str) -> Iterator[Claim]:
        with self._keys.holding((scope, key)):
            claim = _Claim(self._records.get((scope, key)))
            yield claim
            if claim.new is not None:
                self._records[(scope, key)] = claim.new


def request_fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def idempotent(store: IdempotencyStore, *, header: str = IDEMPOTENCY_KEY,
               scope: str | None = None) -> Callable[[Handler], Handler]:
    """Decorate a sync unary servicer method so a repeated idempotency key replays the first response.

    Calls without the header run as usual. A key reused with a different request is refused with
    FAILED_PRECONDITION rather than answered with another request's response. Records are kept per
    `scope`: by default the method's name, which is the gRPC method's name (`Charge`), so renaming or
    moving the servicer class keeps them; pass a scope (e.g. "demo.payment.v1.PaymentService/Charge") when
    one store serves methods of the same name in several services.
    """

    def decorate(method: Handler) -> Handler:
        record_scope = scope or method.__name__

        @functools.wraps(method)
        def handler(self: Any, request: Message, context: grpc.ServicerContext) -> Any:
            key = dict(context.invocation_metadata() or ()).get(header)
            if not key:
                return method(self, request, context)
            fingerprint = request_fingerprint(request)
            with store.claim(record_scope, key) as claim:
                if claim.recorded is not None:
                    if claim.recorded.request_fingerprint != fingerprint:
                        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"idempotency key {shown(key)} was used before with a different request")
                    return _replay(claim.recorded)
                response = method(self, request, context)
                claim.record(Recorded(fingerprint, response.DESCRIPTOR.full_name, response.SerializeToString()))
                return response

        return handler  # type: ignore[return-value]

    return decorate


def _replay(recorded: Recorded) -> Message:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(recorded.response_type)
    return message_factory.GetMessageClass(descriptor).FromString(recorded.response)
