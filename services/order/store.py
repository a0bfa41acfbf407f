"""The order service's SQLite store."""

from __future__ import annotations

import json
import sqlite3
import time

from controlplane.errors import NotFoundError, PreconditionError
from services.common.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id      TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    items         TEXT NOT NULL,
    total_cents   INTEGER NOT NULL,
    status        TEXT NOT NULL,
    saga_id       TEXT NOT NULL DEFAULT '',
    saga_started  INTEGER NOT NULL DEFAULT 0,
    cancel_reason TEXT NOT NULL DEFAULT '',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, order_id);
"""

PENDING, CONFIRMED, CANCELLED = "PENDING", "CONFIRMED", "CANCELLED"
Item = tuple[str, int, int]  # sku, quantity, unit price in cents


class OrderStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as tx:  # databases of an older version lack the outbox column
            if "saga_started" not in {row["name"] for row in tx.execute("PRAGMA table_info(orders)")}:
                tx.execute("ALTER TABLE orders ADD COLUMN saga_started INTEGER NOT NULL DEFAULT 0")
                tx.execute("UPDATE orders SET saga_started = 1 WHERE status != ?", (PENDING,))
            tx.execute("CREATE INDEX IF NOT EXISTS orders_unstarted ON orders (created_at) WHERE saga_started = 0")

    def create(self, order_id: str, request_id: str, user_id: str, items: list[Item], saga_id: str) -> sqlite3.Row:
        """Record a PENDING order; the same request id returns the order it created before."""
        with self.db.transaction() as tx:
            existing = tx.execute("SELECT * FROM orders WHERE request_id = ?", (request_id,)).fetchone()
            if existing is not None:
                return existing
            now = time.time()
            total = sum(quantity * price for _, quantity, price in items)
            tx.execute(
                "INSERT INTO orders (order_id, request_id, user_id, items, total_cents, status, saga_id, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, request_id, user_id, json.dumps(items), total, PENDING, saga_id, now, now),
            )
            return tx.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()

    def mark_saga_started(self, order_id: str) -> None:
        """The control plane has the order's saga: the outbox need not start it again."""
        with self.db.transaction() as tx:
            tx.execute("UPDATE orders SET saga_started = 1 WHERE order_id = ?", (order_id,))

    def unstarted(self, created_before: float, limit: int = 100) -> list[sqlite3.Row]:
        """PENDING orders whose saga start is not confirmed, oldest first (the outbox's work)."""
        return self.db.query(
            "SELECT * FROM orders WHERE saga_started = 0 AND status = ? AND created_at <= ? ORDER BY created_at"
            " LIMIT ?", PENDING, created_before, limit,
        )

    def get(self, order_id: str) -> sqlite3.Row:
        rows = self.db.query("SELECT * FROM orders WHERE order_id = ?", order_id)
        if not rows:
            raise NotFoundError(f"no order {order_id!r}")
        return rows[0]

    def confirm(self, order_id: str) -> sqlite3.Row:
        """PENDING -> CONFIRMED; confirming again is harmless; a cancelled order cannot be confirmed."""
        with self.db.transaction() as tx:
            row = self._locked(tx, order_id)
            if row["status"] == CANCELLED:
                raise PreconditionError(f"order {order_id!r} is cancelled ({row['cancel_reason']})")
            tx.execute(
                "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ? AND status = ?",
                (CONFIRMED, time.time(), order_id, PENDING),
            )
            return self._locked(tx, order_id)

    def cancel(self, order_id: str, reason: str, by_saga: str = "") -> sqlite3.Row:
        """-> CANCELLED; cancelling again is harmless. A confirmed order is cancelled only by its own saga
        (`by_saga`, its id) compensating, which also refunds it; any other caller gets FAILED_PRECONDITION."""
        with self.db.transaction() as tx:
            row = self._locked(tx, order_id)
            if row["status"] == CONFIRMED and by_saga != row["saga_id"]:
                raise PreconditionError(f"order {order_id!r} is confirmed; it can no longer be cancelled")
            if row["status"] != CANCELLED:
                tx.execute(
                    "UPDATE orders SET status = ?, cancel_reason = ?, updated_at = ? WHERE order_id = ?",
                    (CANCELLED, reason, time.time(), order_id),
                )
            return self._locked(tx, order_id)

    def page(self, user_id: str, after: str, limit: int) -> list[sqlite3.Row]:
        if user_id:
            return self.db.query(
                "SELECT * FROM orders WHERE user_id = ? AND order_id > ? ORDER BY order_id LIMIT ?",
                user_id,
                after,
                limit,
            )
        return self.db.query("SELECT * FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?", after, limit)

    @staticmethod
    def _locked(tx: sqlite3.Connection, order_id: str) -> sqlite3.Row:
        row = tx.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no order {order_id!r}")
        return row
