"""Cutting texts to size: what a client sent is echoed in statuses, logs and status RPCs, never whole."""

from __future__ import annotations

__all__ = ["cut"]


def cut(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit - 1` and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
