"""Retries through gRPC's own service config: this module writes no retry loop, it writes the config.

gRPC retries a call transparently when its method has a `retryPolicy` in the channel's service config:
attempts, exponential backoff with jitter, which status codes are retryable, and `retryThrottling`, which
stops retrying when too many calls fail (so retries cannot multiply the load on a struggling server).
Only methods named in `idempotent_methods` retry: a retried call may run twice on the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from controlplane.interceptors._config import from_mapping

__all__ = ["RetryPolicy", "RetryThrottling", "channel_options", "service_config"]


@dataclass(frozen=True)
class RetryThrottling:
    """gRPC's retry throttling, per channel and server.

    max_tokens: the token bucket's size; each failed call takes 1 token, each success gives `token_ratio`
        back; retries stop while the bucket is at or below half full. 1..1000.
    token_ratio: tokens returned per successful call (> 0, at most 3 decimals).
    """

    max_tokens: int = 10
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.max_tokens <= 1000:
            raise ValueError(f"max_tokens must be 1..1000, got {self.max_tokens}")
        if self.token_ratio <= 0:
            raise ValueError(f"token_ratio must be > 0, got {self.token_ratio}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryThrottling:
        return from_mapping(cls, data)


@dataclass(frozen=True)
class RetryPolicy:
    """Which methods gRPC may retry, how often and how fast.

    idempotent_methods: methods safe to run more than once: "pkg.Service/Method", or "pkg.Service" for all
        methods of a service. No other method is retried.
    max_attempts: attempts in total, the first included: 2..5 (gRPC caps attempts at 5).
    initial_backoff: seconds before the first retry (then randomized between 0 and the current backoff).
    max_backoff: seconds the backoff grows to at most.
    backoff_multiplier: growth of the backoff per retry (> 0).
    retryable_codes: status names that make a call retry (a retry also needs no response message yet).
    throttling: gRPC retry throttling for the channel; None disables it.
    """

    idempotent_methods: tuple[str, ...] = ()
    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    retryable_codes: tuple[str, ...] = ("UNAVAILABLE",)
    throttling: RetryThrottling | None = RetryThrottling()

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be 2..5 (the first attempt included), got {self.max_attempts}")
        for name in ("initial_backoff", "max_backoff"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.backoff_multiplier <= 0:
            raise ValueError(f"backoff_multiplier must be > 0, got {self.backoff_multiplier}")
        if not self.retryable_codes:
            raise ValueError("retryable_codes must name at least one status code")
        codes = []
        for name in self.retryable_codes:
            if name.upper() not in grpc.StatusCode.__members__ or name.upper() == "OK":
                raise ValueError(f"retryable_codes: {name!r} is not a gRPC error status name (e.g. 'UNAVAILABLE')")
            codes.append(name.upper())
        object.__setattr__(self, "retryable_codes", tuple(codes))
        object.__setattr__(self, "idempotent_methods", tuple(self.idempotent_methods))
        for name in self.idempotent_methods:
            if not name.strip("/") or name.strip("/").count("/") > 1:
                raise ValueError(f"idempotent_methods: {name!r} is not 'pkg.Service' or 'pkg.Service/Method'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """From e.g. `{"idempotent_methods": ["pkg.Orders/Get"], "max_attempts": 4}`."""
        return from_mapping(cls, data)


def _seconds(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".") + "s"


def _method_name(name: str) -> dict[str, str]:
    service, _, method = name.strip("/").partition("/")
    return {"service": service, "method": method} if method else {"service": service}


def service_config(policy: RetryPolicy) -> dict[str, Any]:
    """The gRPC service config (as a dict) that carries `policy`."""
    config: dict[str, Any] = {}
    if policy.idempotent_methods:
        config["methodConfig"] = [
            {
                "name": [_method_name(name) for name in policy.idempotent_methods],
                "retryPolicy": {
                    "maxAttempts": policy.max_attempts,
                    "initialBackoff": _seconds(policy.initial_backoff),
                    "maxBackoff": _seconds(policy.max_backoff),
                    "backoffMultiplier": policy.backoff_multiplier,
                    "retryableStatusCodes": list(policy.retryable_codes),
                },
            }
        ]
    if policy.throttling is not None:
        config["retryThrottling"] = {
            "maxTokens": policy.throttling.max_tokens,
            "tokenRatio": round(policy.throttling.token_ratio, 3),
        }
    return config


def channel_options(policy: RetryPolicy | None) -> list[tuple[str, Any]]:
    """Options for `grpc.insecure_channel(target, options=...)` (sync or aio) that retry per `policy`."""
    if policy is None:
        return []
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(service_config(policy)))]
