"""A cap on the long-lived streams one caller holds open at once, so one client cannot take them all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from controlplane.errors import LimitExceeded
from controlplane.held import Held

# Open watch streams per caller (per gRPC connection) and per kind of stream.
DEFAULT_PER_CALLER = 100


class StreamQuota:
    """Counts open streams per caller (the peer address gRPC reports, i.e. one client connection)."""

    def __init__(self, what: str, per_caller: int = DEFAULT_PER_CALLER) -> None:
        self._what = what
        self._per_caller = per_caller
        self._open = Held()

    @contextlib.contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        """Count one stream of `caller` while the block runs; LimitExceeded when it has too many open."""
        if self._open.of(caller) >= self._per_caller:
            raise LimitExceeded(f"at most {self._per_caller} {self._what} streams may be open per connection; "
                                "close some first")
        self._open.add(caller)
        try:
            yield
        finally:
            self._open.remove(caller)
