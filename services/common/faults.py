"""Fault injection for the demo: a failure rate and an added latency, changeable live through config."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from controlplane.errors import DomainError


class InjectedFault(DomainError):
    """A failure the demo was asked to produce (config `faults.failure_rate`)."""

    code = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True)
class Faults:
    # Share of calls, 0..1, that fail with UNAVAILABLE.
    failure_rate: float = 0.0
    # Seconds added to every call.
    latency: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Faults:
        """Read `{"faults": {"failure_rate": 0.5, "latency_ms": 200}}`; absent or bad values mean none."""
        faults = config.get("faults") if isinstance(config, Mapping) else None
        if not isinstance(faults, Mapping):
            return cls()
        rate = faults.get("failure_rate", 0.0)
        latency_ms = faults.get("latency_ms", 0.0)
        rate = min(max(float(rate), 0.0), 1.0) if isinstance(rate, int | float) else 0.0
        latency = max(float(latency_ms), 0.0) / 1000 if isinstance(latency_ms, int | float) else 0.0
        return cls(failure_rate=rate, latency=latency)


class FaultInjector:
    """Applies the current Faults to a call; `update` swaps them atomically from any thread."""

    def __init__(self, faults: Faults = Faults(), rng: random.Random | None = None) -> None:
        self._faults = faults
        self._rng = rng or random.Random()
        self._lock = threading.Lock()

    @property
    def faults(self) -> Faults:
        return self._faults

    def update(self, faults: Faults) -> None:
        self._faults = faults

    def maybe_fail(self, what: str) -> None:
        faults = self._faults
        if faults.latency:
            time.sleep(faults.latency)
        if faults.failure_rate:
            with self._lock:
                roll = self._rng.random()
            if roll < faults.failure_rate:
                raise InjectedFault(f"injected failure in {what} (faults.failure_rate={faults.failure_rate:g})")
