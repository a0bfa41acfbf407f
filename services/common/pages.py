"""Paging rules shared by the demo's List RPCs: keyset pages, the token being the last key returned."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    """The page size to use: the default for 0, capped at MAX_PAGE_SIZE."""
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def fetch_page(
    fetch: Callable[[str, int], list[sqlite3.Row]], requested: int, token: str, key: str
) -> tuple[list[sqlite3.Row], str]:
    """One page of rows after `token` and the token of the next page ("" on the last page).

    `fetch(after, limit)` returns up to `limit` rows whose `key` sorts after `after`.
    """
    limit = page_size(requested)
    rows = fetch(token, limit + 1)
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, rows[-1][key]
