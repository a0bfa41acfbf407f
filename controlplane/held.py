"""How many of something each caller holds now (streams, sagas, config checks), for the shares one caller
may take."""

from __future__ import annotations

from collections.abc import Hashable


class Held:
    """Counts per key and in all; a key holding nothing is dropped, so the table does not grow with every
    caller ever seen. Not locked: callers on several threads hold their own lock around it."""

    __slots__ = ("_counts", "total")

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self.total = 0

    def of(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def add(self, key: Hashable) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1
        self.total += 1

    def remove(self, key: Hashable) -> None:
        left = self._counts[key] - 1
        if left:
            self._counts[key] = left
        else:
            del self._counts[key]
        self.total -= 1
