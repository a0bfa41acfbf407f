"""Range-checked argparse types for numeric flags: a bad value is a usage error before anything starts.

`type=float` takes "nan", "inf" and negative numbers, which then fail deep inside a running process (a
traceback after Consul clients have opened) or quietly mean something else. These types refuse them
with argparse's own error (`argument --x: ...`, exit 2). Environment variables that default a flag are
passed to argparse as strings, so a bad value there is refused the same way.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["seconds", "whole"]

DAY = 86_400.0


def _shown(text: object) -> str:
    return repr(str(text)[:40])


def _ascii(text: str) -> str:
    """`text` if it is ASCII: float() and int() also read other scripts' digits ("٣" is 3) and 5,000-digit
    numbers (int() refuses them with a message about its own limit)."""
    if not text.isascii() or len(text) > 40:
        raise ValueError(text)
    return text


def seconds(low: float, high: float = DAY, *, zero: bool = False) -> Callable[[str], float]:
    """A duration in seconds within [low, high]; with zero=True, 0 is accepted too (it means "off")."""

    def parse(text: str) -> float:
        try:
            value = float(_ascii(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {_shown(text)}") from None
        if zero and value == 0:
            return 0.0
        if not (math.isfinite(value) and low <= value <= high):
            allowed = f"0 or {low:g}..{high:g}" if zero else f"{low:g}..{high:g}"
            raise argparse.ArgumentTypeError(f"must be {allowed} seconds, got {_shown(text)}")
        return value

    parse.__name__ = "seconds"
    return parse


def whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number within [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(_ascii(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {_shown(text)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, got {_shown(value)}")
        return value

    parse.__name__ = "whole"
    return parse
