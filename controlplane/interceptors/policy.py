"""Every client-side policy in one object, from code or from a document."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.interceptors._config import from_mapping
from controlplane.interceptors.breaker import BreakerPolicy
from controlplane.interceptors.bulkhead import BulkheadPolicy
from controlplane.interceptors.deadlines import DeadlinePolicy
from controlplane.interceptors.retries import RetryPolicy

__all__ = ["ClientPolicy"]


@dataclass(frozen=True)
class ClientPolicy:
    """Every client-side policy; None switches a concern off.

    deadlines: default deadlines and budget propagation (on by default: 30 s for calls that set none).
    breaker: circuit breaking per target service (on by default).
    bulkhead: a cap on calls in flight per target service (off by default: no cap fits every app).
    retry: gRPC retries for the methods named idempotent, applied by `channel_options()` (off by default).
    """

    deadlines: DeadlinePolicy | None = field(default_factory=DeadlinePolicy)
    breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)
    bulkhead: BulkheadPolicy | None = None
    retry: RetryPolicy | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientPolicy:
        """From e.g. `{"breaker": {"wait_in_open": 5}, "bulkhead": {"max_concurrent": 20}, "retry": null}`.

        A section that is left out keeps its default; a section set to null switches the concern off.
        """
        return from_mapping(cls, data)

    @classmethod
    def from_json(cls, text: str) -> ClientPolicy:
        return cls.from_dict(json.loads(text))
