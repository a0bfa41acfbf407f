"""Texts clients and operators send: cut to size before they are echoed (statuses, logs, status RPCs), and
numbers read from ASCII digits only."""

from __future__ import annotations

__all__ = ["cut", "decimal", "tcp_port"]


def cut(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit - 1` and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decimal(text: str, max_digits: int) -> int | None:
    """The number `text` spells in 1..max_digits ASCII digits, else None.

    `str.isdigit()` alone also takes "²" and "٣" (int() refuses the first and reads the second as 3) and
    thousands of digits (int() refuses more than 4,300): checks built on it fail on input they were meant to refuse.
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def tcp_port(text: str, lowest: int = 1) -> int | None:
    """The TCP port `text` spells (ASCII digits, lowest..65535; 0 asks the system for a free one), else None."""
    number = decimal(text, 5)
    return number if number is not None and lowest <= number <= 65535 else None
