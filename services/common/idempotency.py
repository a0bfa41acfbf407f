"""The saga participant contract for the demo services: a repeated `idempotency-key` replays the first answer.

The services' own writes are idempotent per order already (reserving, charging, confirming or cancelling an
order twice changes nothing); the key adds the exact first response for a resent saga step. So the records
need not share the handler's transaction, and calls with different keys run concurrently.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

from controlplane.saga.idempotency import IdempotencyStore, SqliteIdempotencyStore, idempotent
from services.common.database import data_dir


def key_store(service: str) -> SqliteIdempotencyStore:
    """The service's idempotency records, in a file of their own (the handler writes its own database)."""
    path = data_dir() / f"{service}-idempotency.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteIdempotencyStore(path)


def honour_idempotency_keys(servicer: object, store: IdempotencyStore, methods: Iterable[str]) -> None:
    """Make `methods` of this servicer instance answer a repeated idempotency key from the record."""
    for name in methods:
        method = getattr(type(servicer), name)
        setattr(servicer, name, types.MethodType(idempotent(store)(method), servicer))
