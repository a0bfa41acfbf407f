"""Each demo service keeps its own data in its own SQLite file (database per service)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_DATA_DIR = Path(".run") / "data"


def data_dir() -> Path:
    """Where the demo keeps its databases: $DEMO_DATA_DIR, or .run/data."""
    return Path(os.environ.get("DEMO_DATA_DIR", DEFAULT_DATA_DIR))


class Database:
    """One SQLite file shared by a service's request threads; writes are serialized by a lock.

    `transaction()` is the only way to write: everything inside commits together or not at all.
    """

    def __init__(self, path: Path | str, schema: str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()
        with self._lock:
            self._conn.executescript(schema)  # idempotent DDL; executescript commits by itself

    @classmethod
    def for_service(cls, service: str, schema: str) -> Database:
        return cls(data_dir() / f"{service}.sqlite3", schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, *params: object) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self._conn.close()
