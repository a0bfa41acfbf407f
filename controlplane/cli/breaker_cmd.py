"""`controlplane breaker SERVICE TARGET ACTION`: an operator's state for a service's circuit breakers.

Writes `client_policy.breaker_overrides[TARGET]` in the service's config document; every instance that
follows its live client policy applies it within the push latency of the write (see
`controlplane.interceptors.live`). TARGET is what the breakers guard: "pkg.Service" or "pkg.Service/Method".
"""

from __future__ import annotations

import datetime
from typing import Any

import grpc

from controlplane.cli.config_cmd import update_layer
from controlplane.interceptors.breaker import Override
from controlplane.interceptors.live import POLICY_SECTION
from controlplane.names import BREAKER_TARGET, shown

ACTIONS = {"force-open": "forced_open", "disable": "disabled", "metrics-only": "metrics_only",
           "open-for": "open", "reset": "closed"}


def override(channel: grpc.Channel, service: str, environment: str, target: str, action: str,
             seconds: float | None) -> int:
    state = ACTIONS[action]
    if not BREAKER_TARGET.matches(target):  # refuse what the instances would refuse
        raise ValueError(f"{shown(target)} is not a breaker target: must be {BREAKER_TARGET.rule}")
    Override(state, seconds if state == "open" else None)
    value: dict[str, Any] = {"state": state, "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    if state == "open":
        value["seconds"] = seconds

    def change(layer: dict[str, Any]) -> dict[str, Any]:
        section = layer.setdefault(POLICY_SECTION, {})
        if not isinstance(section, dict):
            raise ValueError(f"{POLICY_SECTION} in {service}'s config is not an object")
        overrides = section.setdefault("breaker_overrides", {})
        overrides[target] = value
        return layer

    return update_layer(channel, service, environment, change, f"breaker {target}: {action}")
