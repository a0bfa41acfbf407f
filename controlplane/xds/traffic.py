"""A service's traffic policy: what stock xDS clients calling it must do, kept in its ConfigService document.

    {"traffic_policy": {
        "timeout_seconds": 2.0,
        "retry": {"codes": ["UNAVAILABLE"], "max_attempts": 3,
                  "base_interval_seconds": 0.025, "max_interval_seconds": 0.25},
        "fault": {"abort": {"code": "UNAVAILABLE", "percent": 5}, "delay": {"seconds": 0.1, "percent": 10}},
        "max_concurrent_requests": 100,
        "outlier_detection": {"failure_percentage_threshold": 50, "request_volume": 20, "minimum_hosts": 2},
        "hash_header": "x-user-id",
        "split": [{"version": "0.2.0", "weight": 10}, {"version": "0.1.0", "weight": 90}]}}

A write whose `traffic_policy` breaks these rules is refused by SetConfig (the schema below, checked with the
document's own schema); the xDS server reads it again and keeps the last good policy if one ever is not.
Retries name only the codes gRPC's xDS clients retry (gRFC A44); attempts count the first call (2..5).
`split` sends each share of calls to the instances of one version (a canary); instances of other versions
get none while a split is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.config import schema as schemas
from controlplane.errors import FieldViolation

SECTION = "traffic_policy"
# gRFC A44: the status codes an xDS retry policy may name, with Envoy's retry_on spelling.
RETRYABLE = {
    "CANCELLED": "cancelled",
    "DEADLINE_EXCEEDED": "deadline-exceeded",
    "INTERNAL": "internal",
    "RESOURCE_EXHAUSTED": "resource-exhausted",
    "UNAVAILABLE": "unavailable",
}
ABORT_CODES = {
    "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
_SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}
_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
_COUNT = {"type": "integer", "minimum": 1, "maximum": 4294967295}

SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {SECTION: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "timeout_seconds": _SECONDS,
            "retry": {
                "type": "object", "additionalProperties": False, "required": ["codes"],
                "properties": {
                    "codes": {"type": "array", "minItems": 1, "uniqueItems": True,
                              "items": {"enum": sorted(RETRYABLE)}},
                    "max_attempts": {"type": "integer", "minimum": 2, "maximum": 5},
                    "base_interval_seconds": _SECONDS,
                    "max_interval_seconds": _SECONDS,
                },
            },
            "fault": {
                "type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {
                    "abort": {"type": "object", "additionalProperties": False, "required": ["code", "percent"],
                              "properties": {"code": {"enum": sorted(ABORT_CODES)}, "percent": _PERCENT}},
                    "delay": {"type": "object", "additionalProperties": False, "required": ["seconds", "percent"],
                              "properties": {"seconds": _SECONDS, "percent": _PERCENT}},
                },
            },
            "max_concurrent_requests": _COUNT,
            "outlier_detection": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "interval_seconds": _SECONDS,
                    "base_ejection_seconds": _SECONDS,
                    "max_ejection_seconds": _SECONDS,
                    "max_ejection_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                    "failure_percentage_threshold": {"type": "integer", "minimum": 0, "maximum": 100},
                    "minimum_hosts": _COUNT,
                    "request_volume": _COUNT,
                },
            },
            "hash_header": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,127}$",
                            "not": {"pattern": "^grpc-|-bin$"}},
            "split": {
                "type": "array", "minItems": 1, "maxItems": 16,
                "items": {"type": "object", "additionalProperties": False, "required": ["version", "weight"],
                          "properties": {"version": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"},
                                         "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}}},
            },
        },
    }},
}


@dataclass(frozen=True)
class Retry:
    codes: tuple[str, ...]
    max_attempts: int = 2
    base_interval: float = 0.025
    max_interval: float = 0.25


@dataclass(frozen=True)
class Fault:
    abort_code: int | None = None
    abort_percent: float = 0.0
    delay: float | None = None
    delay_percent: float = 0.0


@dataclass(frozen=True)
class OutlierDetection:
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: int = 10
    failure_percentage_threshold: int = 85
    minimum_hosts: int = 5
    request_volume: int = 50


@dataclass(frozen=True)
class TrafficPolicy:
    """What the xDS resources of one service say; the default is plain round robin with no limits."""

    timeout: float | None = None
    retry: Retry | None = None
    fault: Fault | None = None
    max_concurrent_requests: int | None = None
    outlier_detection: OutlierDetection | None = None
    hash_header: str | None = None
    split: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_document(cls, content: Mapping[str, Any]) -> TrafficPolicy:
        """The policy in a document's `traffic_policy` section (the default when absent); ValueError naming
        every problem when it breaks the rules."""
        problems = check(content, root="")
        if problems:
            raise ValueError("; ".join(f"{p.field}: {p.description}" for p in problems))
        section = content.get(SECTION) or {}
        return cls(
            timeout=section.get("timeout_seconds"),
            retry=_retry(section["retry"]) if "retry" in section else None,
            fault=_fault(section["fault"]) if "fault" in section else None,
            max_concurrent_requests=section.get("max_concurrent_requests"),
            outlier_detection=(OutlierDetection(**_renamed(section["outlier_detection"]))
                               if "outlier_detection" in section else None),
            hash_header=section.get("hash_header"),
            split=tuple((entry["version"], entry["weight"]) for entry in section.get("split", ())),
        )


def check(content: Mapping[str, Any], root: str = "content") -> list[FieldViolation]:
    """Every problem with a document's `traffic_policy` section; [] when valid or absent."""
    if SECTION not in content:
        return []
    problems = schemas.violations(SCHEMA, {SECTION: content[SECTION]}, root=root)
    if problems:
        return problems
    section = content[SECTION]
    where = f"{root}.{SECTION}" if root else SECTION
    retry = section.get("retry")
    if retry and retry.get("max_interval_seconds", 0.25) < retry.get("base_interval_seconds", 0.025):
        problems.append(FieldViolation(f"{where}.retry.max_interval_seconds",
                                       "must be at least base_interval_seconds"))
    split = section.get("split", ())
    versions = [entry["version"] for entry in split]
    if len(set(versions)) != len(versions):
        problems.append(FieldViolation(f"{where}.split", "each version may appear once"))
    if split and not any(entry["weight"] for entry in split):
        problems.append(FieldViolation(f"{where}.split", "at least one weight must be above 0"))
    return problems


def _retry(section: Mapping[str, Any]) -> Retry:
    return Retry(tuple(section["codes"]), section.get("max_attempts", 2), section.get("base_interval_seconds", 0.025),
                 section.get("max_interval_seconds", 0.25))


def _fault(section: Mapping[str, Any]) -> Fault:
    abort, delay = section.get("abort"), section.get("delay")
    return Fault(
        abort_code=ABORT_CODES[abort["code"]] if abort else None,
        abort_percent=abort["percent"] if abort else 0.0,
        delay=delay["seconds"] if delay else None,
        delay_percent=delay["percent"] if delay else 0.0,
    )


def _renamed(section: Mapping[str, Any]) -> dict[str, Any]:
    """The document's `*_seconds` names as the dataclass's fields."""
    return {key.removesuffix("_seconds"): value for key, value in section.items()}
