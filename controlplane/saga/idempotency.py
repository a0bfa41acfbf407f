"""Participant side of exactly-once effects: answer a repeated `idempotency-key` from the record.

The orchestrator sends a step again, with the same `idempotency-key` request metadata, whenever it
cannot know whether an earlier attempt took effect (a timeout, a crash of the control plane). A
participant decorates its handlers with `idempotent(store)`: the first call with a key runs the handler
and records its response; every later call with that key gets the recorded response back without
running the handler again.

Handlers run inside the store's transaction. With `SqliteIdempotencyStore`, a handler that writes its
own data through `store.connection` commits it atomically with the record, so even a participant that
crashes mid-call never applies a step twice. Failed calls are not recorded: they roll back and may be
tried again.

    store = SqliteIdempotencyStore("inventory.db")

    class Inventory(inventory_pb2_grpc.InventoryServiceServicer):
        @idempotent(store)
        def Reserve(self, request, context):
            store.connection.execute("INSERT INTO reservations ...")
            return inventory_pb2.ReserveResponse(...)
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


class SqliteIdempotencyStore:
    """Records in SQLite. One writer at a time (also across processes sharing the file), so a repeat
    that arrives while the first call runs waits for it and then gets its response."""

    def __init__(self, path: str | Path = ":memory:", *, busy_timeout: float = 30.0) -> None:
        self.connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                          timeout=busy_timeout)
        self._lock = threading.RLock()
        with self._lock:
            if str(path) != ":memory:":
                self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS idempotency_records ("
                " scope TEXT NOT NULL, key TEXT NOT NULL, request_fingerprint TEXT NOT NULL,"
                " response_type TEXT NOT NULL, response BLOB NOT NULL, PRIMARY KEY (scope, key))"
            )

    @contextlib.contextmanager
    def claim(self, scope: str, key: str) -> Iterator[Claim]:
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                row = self.connection.execute(
                    "SELECT request_fingerprint, response_type, response FROM idempotency_records"
                    " WHERE scope = ? AND key = ?", (scope, key),
                ).fetchone()
                claim = _Claim(Recorded(row[0], row[1], bytes(row[2])) if row else None)
                yield claim
                if claim.new is not None:
                    self.connection.execute(
                        "INSERT INTO idempotency_records VALUES (?, ?, ?, ?, ?)",
                        (scope, key, claim.new.request_fingerprint, claim.new.response_type, claim.new.response),
                    )
                self.connection.execute("COMMIT")
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self.connection.close()


class MemoryIdempotencyStore:
    """Records in memory: for tests and participants whose effects are in memory too."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[tuple[str, str], Recorded] = {}

    @contextlib.contextmanager
    def claim(self, scope: str, key: str) -> Iterator[Claim]:
        with self._lock:
            claim = _Claim(self._records.get((scope, key)))
            yield claim
            if claim.new is not None:
                self._records[(scope, key)] = claim.new


def request_fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def idempotent(store: IdempotencyStore, *, header: str = IDEMPOTENCY_KEY) -> Callable[[Handler], Handler]:
    """Decorate a sync unary servicer method so a repeated idempotency key replays the first response.

    Calls without the header run as usual. A key reused with a different request is refused with
    FAILED_PRECONDITION rather than answered with another request's response.
    """

    def decorate(method: Handler) -> Handler:
        scope = method.__qualname__

        @functools.wraps(method)
        def handler(self: Any, request: Message, context: grpc.ServicerContext) -> Any:
            key = dict(context.invocation_metadata() or ()).get(header)
            if not key:
                return method(self, request, context)
            fingerprint = request_fingerprint(request)
            with store.claim(scope, key) as claim:
                if claim.recorded is not None:
                    if claim.recorded.request_fingerprint != fingerprint:
                        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"idempotency key {key!r} was used before with a different request")
                    return _replay(claim.recorded)
                response = method(self, request, context)
                claim.record(Recorded(fingerprint, response.DESCRIPTOR.full_name, response.SerializeToString()))
                return response

        return handler  # type: ignore[return-value]

    return decorate


def _replay(recorded: Recorded) -> Message:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(recorded.response_type)
    return message_factory.GetMessageClass(descriptor).FromString(recorded.response)
