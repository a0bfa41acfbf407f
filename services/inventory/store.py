"""The inventory service's SQLite store: stock levels and per-order reservations."""

from __future__ import annotations

import json
import sqlite3
import uuid

from controlplane.errors import NotFoundError, PreconditionError
from services.common.database import Database

# Units a sku may hold: the API counts stock in uint32, and far fewer than that fit any warehouse.
MAX_STOCK = 1_000_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku       TEXT PRIMARY KEY,
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved  INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    order_id       TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL,
    items          TEXT NOT NULL,
    status         TEXT NOT NULL
);
"""

RESERVED, RELEASED = "RESERVED", "RELEASED"


class InventoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(self, order_id: str, items: list[tuple[str, int]]) -> sqlite3.Row:
        """Take stock for every item or none. Reserving again for the same order returns the first reservation."""
        with self.db.transaction() as tx:
            existing = tx.execute("SELECT * FROM reservations WHERE order_id = ?", (order_id,)).fetchone()
            if existing is not None:
                if existing["status"] == RELEASED:
                    raise PreconditionError(f"the reservation of order {order_id!r} was released")
                return existing
            for sku, quantity in items:
                row = tx.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
                if row is None:
                    raise PreconditionError(f"unknown sku {sku!r}")
                if row["available"] < quantity:
                    raise PreconditionError(f"not enough {sku!r}: {row['available']} available, {quantity} wanted")
                tx.execute(
                    "UPDATE stock SET available = available - ?, reserved = reserved + ? WHERE sku = ?",
                    (quantity, quantity, sku),
                )
            tx.execute(
                "INSERT INTO reservations (order_id, reservation_id, items, status) VALUES (?, ?, ?, ?)",
                (order_id, f"res-{uuid.uuid4().hex[:10]}", json.dumps(items), RESERVED),
            )
            return tx.execute("SELECT * FROM reservations WHERE order_id = ?", (order_id,)).fetchone()

    def release(self, order_id: str) -> sqlite3.Row | None:
        """Give an order's stock back; None when the order held no reservation. Releasing twice is harmless."""
        with self.db.transaction() as tx:
            existing = tx.execute("SELECT * FROM reservations WHERE order_id = ?", (order_id,)).fetchone()
            if existing is None:
                return None
            if existing["status"] == RESERVED:
                for sku, quantity in json.loads(existing["items"]):
                    tx.execute(
                        "UPDATE stock SET available = available + ?, reserved = reserved - ? WHERE sku = ?",
                        (quantity, quantity, sku),
                    )
                tx.execute("UPDATE reservations SET status = ? WHERE order_id = ?", (RELEASED, order_id))
            return tx.execute("SELECT * FROM reservations WHERE order_id = ?", (order_id,)).fetchone()

    def stock(self, sku: str) -> sqlite3.Row:
        rows = self.db.query("SELECT * FROM stock WHERE sku = ?", sku)
        if not rows:
            raise NotFoundError(f"unknown sku {sku!r}")
        return rows[0]

    def add(self, sku: str, quantity: int) -> sqlite3.Row:
        """Add stock; refused when a sku would hold more than MAX_STOCK units (the API counts in uint32)."""
        with self.db.transaction() as tx:
            row = tx.execute("SELECT available + reserved AS held FROM stock WHERE sku = ?", (sku,)).fetchone()
            held = row["held"] if row is not None else 0
            if held + quantity > MAX_STOCK:
                raise PreconditionError(f"{sku!r} would hold {held + quantity} units; at most {MAX_STOCK}")
            tx.execute(
                "INSERT INTO stock (sku, available, reserved) VALUES (?, ?, 0) "
                "ON CONFLICT (sku) DO UPDATE SET available = available + excluded.available",
                (sku, quantity),
            )
        return self.stock(sku)
