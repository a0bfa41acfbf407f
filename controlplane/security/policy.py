"""The authorization policy: who may call which control-plane method on what.

The file (YAML; `controlplane serve --authz-policy FILE`, documented in docs/security.md):

    trust_domain: controlplane            # identities are spiffe://TRUST_DOMAIN/KIND/NAME
    operators:                            # may do everything; a trailing * matches any rest
      - spiffe://controlplane/operator/*
    start_sagas:                          # which service may start which saga definitions
      order: [place-order]
    read_config:                          # configs a service may read beyond its own
      payment: [shared-limits]
    tokens:                               # bearer tokens, for callers without a certificate
      - identity: spiffe://controlplane/operator/ci
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

The rules, for an identity `spiffe://TD/service/S` (operators pass every rule):
- registers, heartbeats and deregisters instances of S only; discovers and watches any service;
- reads (GetConfig, WatchConfig, EvaluateFlag, GetSchema, ListVersions, GetVersion) the config of S and of
  the services `read_config` lists for it; writes no config, schema or rollback;
- starts the sagas `start_sagas` lists for it; reads any saga and definition; registers no definition and
  aborts no saga;
- subscribes to xDS resources; the xDS status is for operators.
Health checks and reflection need no identity. Every other method is denied.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml


class Rule(Enum):
    """What a method asks of its caller."""

    OPEN = "open"  # no identity needed (health, reflection)
    ANY = "any"  # any identity
    OWN_INSTANCES = "own_instances"  # the request's service (or its instance's service) is the caller's
    READ_CONFIG = "read_config"  # the caller's own config, or one read_config lists for it
    START_SAGA = "start_saga"  # a definition start_sagas lists for the caller
    OPERATOR = "operator"


RULES: Mapping[str, Rule] = {
    "controlplane.v1.RegistryService/Register": Rule.OWN_INSTANCES,
    "controlplane.v1.RegistryService/Deregister": Rule.OWN_INSTANCES,
    "controlplane.v1.RegistryService/Heartbeat": Rule.OWN_INSTANCES,
    "controlplane.v1.RegistryService/Discover": Rule.ANY,
    "controlplane.v1.RegistryService/Watch": Rule.ANY,
    "controlplane.v1.RegistryService/ListServices": Rule.ANY,
    "controlplane.v1.ConfigService/GetConfig": Rule.READ_CONFIG,
    "controlplane.v1.ConfigService/WatchConfig": Rule.READ_CONFIG,
    "controlplane.v1.ConfigService/EvaluateFlag": Rule.READ_CONFIG,
    "controlplane.v1.ConfigService/GetSchema": Rule.READ_CONFIG,
    "controlplane.v1.ConfigService/ListVersions": Rule.READ_CONFIG,
    "controlplane.v1.ConfigService/GetVersion": Rule.READ_CONFIG,
    "controlplane.v1.ConfigService/SetConfig": Rule.OPERATOR,
    "controlplane.v1.ConfigService/SetSchema": Rule.OPERATOR,
    "controlplane.v1.ConfigService/Rollback": Rule.OPERATOR,
    "controlplane.v1.SagaService/StartSaga": Rule.START_SAGA,
    "controlplane.v1.SagaService/RegisterDefinition": Rule.OPERATOR,
    "controlplane.v1.SagaService/AbortSaga": Rule.OPERATOR,
    "controlplane.v1.SagaService/GetSaga": Rule.ANY,
    "controlplane.v1.SagaService/ListSagas": Rule.ANY,
    "controlplane.v1.SagaService/WatchSaga": Rule.ANY,
    "controlplane.v1.SagaService/GetDefinition": Rule.ANY,
    "controlplane.v1.SagaService/ListDefinitions": Rule.ANY,
    "controlplane.v1.XdsStatusService/ListXdsClients": Rule.OPERATOR,
    "envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources": Rule.ANY,
}
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Policy:
    trust_domain: str = "controlplane"
    operators: tuple[str, ...] = ()
    start_sagas: Mapping[str, frozenset[str]] = field(default_factory=dict)
    read_config: Mapping[str, frozenset[str]] = field(default_factory=dict)
    tokens: Mapping[str, str] = field(default_factory=dict)  # sha256 hex -> identity

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        try:
            document = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"authorization policy {path}: {exc}") from None
        try:
            return cls.from_dict(document)
        except (TypeError, ValueError, KeyError) as exc:
            raise PolicyError(f"authorization policy {path}: {exc}") from None

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Policy:
        unknown = set(document) - {"trust_domain", "operators", "start_sagas", "read_config", "tokens"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        tokens = {}
        for entry in document.get("tokens") or ():
            digest = str(entry["sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"token of {entry.get('identity')!r}: sha256 must be 64 hex digits")
            tokens[digest] = str(entry["identity"])
        return cls(
            trust_domain=str(document.get("trust_domain", "controlplane")),
            operators=tuple(str(p) for p in document.get("operators") or ()),
            start_sagas=_lists(document.get("start_sagas"), "start_sagas"),
            read_config=_lists(document.get("read_config"), "read_config"),
            tokens=tokens,
        )

    def is_operator(self, identity: str) -> bool:
        return any(fnmatch.fnmatchcase(identity, pattern) if pattern.endswith("*") else identity == pattern
                   for pattern in self.operators)

    def service_of(self, identity: str) -> str | None:
        """S for spiffe://TRUST_DOMAIN/service/S, else None."""
        prefix = f"spiffe://{self.trust_domain}/service/"
        name = identity.removeprefix(prefix)
        return name if identity.startswith(prefix) and name and "/" not in name else None


def rule_for(method: str) -> Rule | None:
    """The rule of a full method name ("/pkg.Service/Method"); None when the method is unknown (denied)."""
    name = method.lstrip("/")
    if name.split("/", 1)[0] in OPEN_SERVICES:
        return Rule.OPEN
    return RULES.get(name)


def _lists(value: Any, what: str) -> dict[str, frozenset[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must map service names to lists")
    found = {}
    for service, names in value.items():
        if not isinstance(names, Sequence) or isinstance(names, str):
            raise ValueError(f"{what}.{service} must be a list")
        found[str(service)] = frozenset(str(n) for n in names)
    return found
