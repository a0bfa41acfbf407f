"""The user service's SQLite store."""

from __future__ import annotations

import sqlite3
import time

from controlplane.errors import AlreadyExistsError, NotFoundError
from services.common.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
"""


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, user_id: str, name: str, email: str) -> sqlite3.Row:
        with self.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone():
                raise AlreadyExistsError(f"user {user_id!r} already exists")
            tx.execute(
                "INSERT INTO users (user_id, name, email, active, created_at) VALUES (?, ?, ?, 1, ?)",
                (user_id, name, email, time.time()),
            )
        return self.get(user_id)

    def get(self, user_id: str) -> sqlite3.Row:
        rows = self.db.query("SELECT * FROM users WHERE user_id = ?", user_id)
        if not rows:
            raise NotFoundError(f"no user {user_id!r}")
        return rows[0]

    def page(self, after: str, limit: int) -> list[sqlite3.Row]:
        return self.db.query("SELECT * FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?", after, limit)
