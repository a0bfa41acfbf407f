"""The payment service's SQLite store: one payment per order."""

from __future__ import annotations

import sqlite3
import time
import uuid

from controlplane.errors import AlreadyExistsError, NotFoundError
from services.common.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_id   TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
"""

CHARGED, REFUNDED = "CHARGED", "REFUNDED"


class PaymentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def charged(self, order_id: str) -> bool:
        """Whether the order has a payment (charged or refunded)."""
        return bool(self.db.query("SELECT 1 FROM payments WHERE order_id = ?", order_id))

    def charge(self, order_id: str, user_id: str, amount_cents: int, currency: str) -> sqlite3.Row:
        """Charge an order once: charging it again with the same amount returns the first payment."""
        with self.db.transaction() as tx:
            existing = tx.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()
            if existing is not None:
                if (existing["amount_cents"], existing["currency"]) != (amount_cents, currency):
                    raise AlreadyExistsError(f"order {order_id!r} was already charged a different amount")
                return existing
            now = time.time()
            tx.execute(
                "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (f"pay-{uuid.uuid4().hex[:10]}", order_id, user_id, amount_cents, currency, CHARGED, now, now),
            )
            return tx.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()

    def refund(self, order_id: str) -> sqlite3.Row | None:
        """Refund an order's payment; None when it was never charged. Refunding twice is harmless."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE payments SET status = ?, updated_at = ? WHERE order_id = ? AND status = ?",
                (REFUNDED, time.time(), order_id, CHARGED),
            )
            return tx.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()

    def get(self, payment_id: str = "", order_id: str = "") -> sqlite3.Row:
        rows = self.db.query("SELECT * FROM payments WHERE payment_id = ? OR order_id = ?", payment_id, order_id)
        if not rows:
            raise NotFoundError(f"no payment {payment_id or 'for order ' + repr(order_id)}")
        return rows[0]
