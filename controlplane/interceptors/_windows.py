"""Sliding windows of call outcomes for the circuit breaker: the last N calls, or the last N seconds.

Both keep running totals (a `Tally`), so recording an outcome and reading the rates cost O(1) (the time
window clears at most one bucket per elapsed second). Not thread-safe: the breaker holds its lock around them.
"""

from __future__ import annotations

import math
from array import array


class Tally:
    """Counts of outcomes: calls, failures, slow calls, slow failures, and the summed duration of the
    `timed` calls (streams are not timed)."""

    __slots__ = ("calls", "duration", "failures", "slow", "slow_failures", "timed")

    def __init__(self) -> None:
        self.calls = self.failures = self.slow = self.slow_failures = self.timed = 0
        self.duration = 0.0

    def add(self, failed: bool, slow: bool, duration: float | None, sign: int = 1) -> None:
        self.calls += sign
        self.failures += sign * failed
        self.slow += sign * slow
        self.slow_failures += sign * (slow and failed)
        if duration is not None:
            self.timed += sign
            self.duration += sign * duration

    def copy(self) -> Tally:
        other = Tally()
        other.calls, other.failures, other.slow = self.calls, self.failures, self.slow
        other.slow_failures, other.timed, other.duration = self.slow_failures, self.timed, self.duration
        return other

    def clear(self) -> None:
        self.calls = self.failures = self.slow = self.slow_failures = self.timed = 0
        self.duration = 0.0


class Window:
    """The totals (`tally`) of the outcomes in the window."""

    tally: Tally

    def record(self, now: float, failed: bool, slow: bool, duration: float | None) -> None:
        raise NotImplementedError

    def expire(self, now: float) -> None:
        """Forget outcomes that fell out of the window by `now` (seconds on the breaker's clock)."""

    def reset(self) -> None:
        raise NotImplementedError


_FAILED, _SLOW, _OCCUPIED, _TIMED = 1, 2, 4, 8


class CountWindow(Window):
    """The last `size` calls."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.tally = Tally()
        self.reset()

    def reset(self) -> None:
        self._ring = bytearray(self._size)  # per slot: the _FAILED | _SLOW | _OCCUPIED | _TIMED bits
        self._durations = array("d", bytes(8 * self._size))
        self._next = 0
        self.tally.clear()

    def record(self, now: float, failed: bool, slow: bool, duration: float | None) -> None:
        slot = self._next
        old = self._ring[slot]
        if old & _OCCUPIED:
            self.tally.add(bool(old & _FAILED), bool(old & _SLOW),
                           self._durations[slot] if old & _TIMED else None, -1)
        self._ring[slot] = _OCCUPIED | (_FAILED if failed else 0) | (_SLOW if slow else 0) | (
            _TIMED if duration is not None else 0)
        self._durations[slot] = duration or 0.0
        self._next = (slot + 1) % self._size
        self.tally.add(failed, slow, duration)


class TimeWindow(Window):
    """The calls of the last `seconds` seconds, in one-second buckets."""

    def __init__(self, seconds: int) -> None:
        self._size = seconds
        self.tally = Tally()
        self.reset()

    def reset(self) -> None:
        self._buckets = [Tally() for _ in range(self._size)]
        self._head = -math.inf  # the whole second the newest bucket belongs to
        self.tally.clear()

    def expire(self, now: float) -> None:
        second = math.floor(now)
        if second <= self._head:
            return
        if second - self._head >= self._size:
            self.reset()
        else:
            tally = self.tally
            for s in range(int(self._head) + 1, second + 1):
                bucket = self._buckets[s % self._size]
                tally.calls -= bucket.calls
                tally.failures -= bucket.failures
                tally.slow -= bucket.slow
                tally.slow_failures -= bucket.slow_failures
                tally.timed -= bucket.timed
                tally.duration -= bucket.duration
                bucket.clear()
        self._head = second

    def record(self, now: float, failed: bool, slow: bool, duration: float | None) -> None:
        self.expire(now)
        self._buckets[int(self._head) % self._size].add(failed, slow, duration)
        self.tally.add(failed, slow, duration)
