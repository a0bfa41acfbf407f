"""Live client policies: change breakers, bulkheads, deadlines and retries of running channels.

A `LivePolicy` holds the `ClientPolicy` that channels built from it follow, and the breaker and bulkhead
registries they share. `update()` applies a new policy to every such channel at once, keeping the breaker
state that still applies (see `CircuitBreaker.reconfigure`); `follow(config_client)` makes a section of
the service's ConfigService document that policy, within the push latency of a SetConfig:

    {"client_policy": {
        "deadlines": {"default_timeout": 2},
        "breaker": {"failure_rate_threshold": 0.3},
        "bulkhead": {"max_concurrent": 20},
        "retry": {"idempotent_methods": ["shop.Inventory/Get"]},
        "breaker_overrides": {"shop.Payment": {"state": "forced_open", "at": "2026-12-02T10:00:00Z"}}
    }}

A section left out keeps its default; null switches the concern off. `breaker_overrides` are an operator's
states by target (`Override`): each is applied when it appears or changes (an `at` stamp makes a repeated
command a change), and a target whose override goes away is reset. A document that does not parse leaves
the running policy as it was, and says why in the log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from controlplane.interceptors.breaker import BreakerPolicy, BreakerRegistry, Override
from controlplane.interceptors.bulkhead import BulkheadPolicy, BulkheadRegistry
from controlplane.interceptors.call import Clock
from controlplane.interceptors.policy import ClientPolicy
from controlplane.names import BREAKER_TARGET, shown

__all__ = ["POLICY_SECTION", "LivePolicy", "parse_overrides"]

log = logging.getLogger(__name__)

POLICY_SECTION = "client_policy"
"""Where `follow()` reads the policy in a service's config document, by default."""

PolicyListener = Callable[[ClientPolicy], None]


class _Followable(Protocol):
    @property
    def snapshot(self) -> Any: ...

    def on_change(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...


def parse_overrides(section: Any) -> dict[str, Override]:
    """`{"pkg.Service": {"state": "forced_open", "at": "..."}}` -> Overrides by target (ValueError if malformed)."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"breaker_overrides must be a mapping of target -> override, got {type(section).__name__}")
    overrides = {}
    for target, value in section.items():
        if not isinstance(target, str) or not BREAKER_TARGET.matches(target):
            raise ValueError(f"breaker_overrides: {shown(target)} is not a breaker target: "
                             f"must be {BREAKER_TARGET.rule}")
        if not isinstance(value, Mapping) or "state" not in value:
            raise ValueError(f"breaker_overrides[{target!r}] must be an object with a 'state', got {value!r}")
        unknown = set(value) - {"state", "seconds", "at", "by"}
        if unknown:
            raise ValueError(f"breaker_overrides[{target!r}]: unknown keys {sorted(unknown)}")
        seconds = value.get("seconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
            raise ValueError(f"breaker_overrides[{target!r}].seconds must be a number, got {seconds!r}")
        overrides[str(target)] = Override(value["state"], None if seconds is None else float(seconds))
    return overrides


class LivePolicy:
    """The client policy of running channels; `update()` or `follow()` changes it under them."""

    def __init__(self, policy: ClientPolicy | None = None, *, clock: Clock = time.monotonic) -> None:
        self._policy = policy or ClientPolicy()
        self._lock = threading.Lock()
        self.breakers = BreakerRegistry(self._policy.breaker or BreakerPolicy(), clock=clock)
        self.bulkheads = BulkheadRegistry(self._policy.bulkhead or BulkheadPolicy())
        self._listeners: list[Callable[[], PolicyListener | None]] = []  # None: a weak listener that is gone
        self._overrides: dict[str, tuple[Override, Any]] = {}  # target -> (override, its raw value)

    @property
    def policy(self) -> ClientPolicy:
        return self._policy

    def on_change(self, listener: PolicyListener) -> Callable[[], None]:
        """Call `listener(policy)` after every update; returns a function that unsubscribes."""
        return self._subscribe(lambda: listener)

    def follow_weakly(self, concern: Any) -> None:
        """Call `concern.follow(policy)` after every update, for as long as the concern lives otherwise
        (interceptors that are dropped stop following and are not kept alive by this policy)."""
        method = weakref.WeakMethod(concern.follow)
        self._subscribe(method)

    def _subscribe(self, resolve: Callable[[], PolicyListener | None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(resolve)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(resolve)

        return remove

    def update(self, policy: ClientPolicy) -> None:
        """Apply `policy` to every channel built from this live policy, now."""
        with self._lock:
            self._policy = policy
            resolved = [(resolve, resolve()) for resolve in self._listeners]
            self._listeners = [resolve for resolve, listener in resolved if listener is not None]
            listeners = [listener for _, listener in resolved if listener is not None]
        if policy.breaker is not None:
            self.breakers.reconfigure(policy.breaker)
        if policy.bulkhead is not None:
            self.bulkheads.reconfigure(policy.bulkhead)
        for listener in listeners:
            try:
                listener(policy)
            except Exception:
                log.exception("client policy listener %r failed", listener)

    def apply_overrides(self, raw: Mapping[str, Any]) -> None:
        """Apply the operator states in `raw` (as `breaker_overrides` in a document) that are new or changed;
        reset the targets whose override is gone."""
        self._apply_parsed(raw, parse_overrides(raw))

    def _apply_parsed(self, raw: Mapping[str, Any], parsed: dict[str, Override]) -> None:
        with self._lock:
            previous = self._overrides
            self._overrides = {target: (parsed[target], raw[target]) for target in parsed}
        for target, override in parsed.items():
            if target not in previous or previous[target][1] != raw[target]:
                log.info("breaker override for %s: %s", target, override.state)
                self.breakers.override(target, override)
        for target in previous.keys() - parsed.keys():
            log.info("breaker override for %s lifted: reset", target)
            self.breakers.override(target, None)

    def apply_section(self, section: Mapping[str, Any] | None) -> None:
        """A `client_policy` section of a document: the policy and its breaker overrides (ValueError or
        TypeError if it does not parse; nothing is changed then)."""
        section = dict(section or {})
        raw_overrides = section.pop("breaker_overrides", None) or {}
        overrides = parse_overrides(raw_overrides)  # both parsed before anything changes
        policy = ClientPolicy.from_dict(section)
        self.update(policy)
        self._apply_parsed(raw_overrides, overrides)

    def follow(self, config: _Followable, path: str = POLICY_SECTION) -> Callable[[], None]:
        """Make section `path` of a ConfigClient's (sync or asyncio) document this policy, now and on
        every change; returns a function that stops following."""

        def apply(snapshot: Any) -> None:
            section = snapshot.get(path) if snapshot is not None else None
            if section is not None and not isinstance(section, Mapping):
                log.error("config %s must be an object; keeping the running client policy", path)
                return
            try:
                self.apply_section(section)
            except (TypeError, ValueError) as exc:
                log.error("config %s (version %s) does not parse, keeping the running client policy: %s",
                          path, getattr(snapshot, "version", "?"), exc)

        stop = config.on_change(apply)  # first, so no change slips between reading and subscribing
        apply(config.snapshot)
        return stop
