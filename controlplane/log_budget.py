"""Log lines that clients cause, within a budget: a client repeating a refused call or a NACK writes a few
lines a minute, not one per request, and the lines say how many were left out.

Keys are bounded too (the oldest is forgotten first), so clients naming new keys cannot grow it without end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["LogBudget"]


class LogBudget:
    """At most `burst` lines per key in any `per` seconds; the rest are counted and reported with the next one."""

    def __init__(self, log: logging.Logger, *, burst: int = 5, per: float = 60.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._burst = burst
        self._per = per
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[object, tuple[list[float], int]] = OrderedDict()  # key -> (recent times, left out)

    def log(self, level: int, key: object, message: str, *args: Any) -> bool:
        """Log `message % args` unless `key` has had `burst` lines in the last `per` seconds; whether it was."""
        now = self._clock()
        with self._lock:
            recent, left_out = self._keys.pop(key, ([], 0))
            recent = [at for at in recent if now - at < self._per]
            allowed = len(recent) < self._burst
            if allowed:
                recent.append(now)
            self._keys[key] = (recent, 0 if allowed else left_out + 1)
            while len(self._keys) > self._max_keys:
                self._keys.popitem(last=False)
        if allowed:
            if left_out:
                message += " (%d more like it not logged)"
                args = (*args, left_out)
            self._log.log(level, message, *args)
        return allowed
