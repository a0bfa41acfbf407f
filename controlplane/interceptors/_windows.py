"""Sliding windows of call outcomes for the circuit breaker: the last N calls, or the last N seconds.

Both keep running totals, so recording an outcome and reading the rates cost O(1) (the time window
clears at most one bucket per elapsed second). Not thread-safe: the breaker holds its lock around them.
"""

from __future__ import annotations

import math


class Window:
    """Counts of calls, failed calls and slow calls over the window."""

    calls = 0
    failures = 0
    slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        raise NotImplementedError

    def expire(self, now: float) -> None:
        """Forget outcomes that fell out of the window by `now` (seconds on the breaker's clock)."""

    def reset(self) -> None:
        raise NotImplementedError


class CountWindow(Window):
    """The last `size` calls."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.reset()

    def reset(self) -> None:
        self._ring = bytearray(self._size)  # per slot: bit 0 = failed, bit 1 = slow, bit 2 = occupied
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        old = self._ring[self._next]
        if old & 4:
            self.calls -= 1
            self.failures -= old & 1
            self.slow -= (old >> 1) & 1
        self._ring[self._next] = 4 | failed | (slow << 1)
        self._next = (self._next + 1) % self._size
        self.calls += 1
        self.failures += failed
        self.slow += slow


class TimeWindow(Window):
    """The calls of the last `seconds` seconds, in one-second buckets."""

    def __init__(self, seconds: int) -> None:
        self._size = seconds
        self.reset()

    def reset(self) -> None:
        self._buckets = [[0, 0, 0] for _ in range(self._size)]  # [calls, failures, slow]
        self._head = -math.inf  # the whole second the newest bucket belongs to
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        second = math.floor(now)
        if second <= self._head:
            return
        if second - self._head >= self._size:
            self.reset()
        else:
            for s in range(int(self._head) + 1, second + 1):
                bucket = self._buckets[s % self._size]
                self.calls -= bucket[0]
                self.failures -= bucket[1]
                self.slow -= bucket[2]
                bucket[0] = bucket[1] = bucket[2] = 0
        self._head = second

    def record(self, now: float, failed: bool, slow: bool) -> None:
        self.expire(now)
        bucket = self._buckets[int(self._head) % self._size]
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow
