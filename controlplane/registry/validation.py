"""Checks on registry requests. Every problem is reported at once, before anything is written."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from controlplane import names
from controlplane.errors import FieldViolation

HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    re.ASCII,
)
META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}", re.ASCII)
RESERVED_META_PREFIXES = ("consul-", "cp-")
# Consul allows 64 metadata pairs per service; the version takes one of them.
MAX_META_PAIRS = 62  # Consul allows 64; the version and the agent address take two
MAX_META_VALUE = 512
MAX_TAG = 255
MAX_TAGS = 64
MAX_VERSION = 128
# A heartbeat's note, stored as the TTL check's output (Consul keeps at most 4 KiB of it).
MAX_NOTE = 1024
# Instances the control plane registers for itself; no client may deregister or replace them.
RESERVED_SERVICES = frozenset({"controlplane-saga"})


def check_service_name(name: str, field: str = "service") -> list[FieldViolation]:
    return names.SERVICE.check(name, field)


def check_client_service(name: str, field: str = "service") -> list[FieldViolation]:
    """A service name a client may register or deregister instances of."""
    problems = check_service_name(name, field)
    if not problems and name in RESERVED_SERVICES:
        problems = [FieldViolation(field, f"{name!r} is the control plane's own service; it cannot be changed")]
    return problems


def check_instance_id(instance_id: str, field: str = "instance_id", required: bool = True) -> list[FieldViolation]:
    if not instance_id and required:
        return [FieldViolation(field, "required: the instance id")]
    return names.IDENTIFIER.check(instance_id, field, required=required)


def check_version(version: str, field: str = "version") -> list[FieldViolation]:
    if len(version) > MAX_VERSION or (version and not _VERSION.fullmatch(version)):
        return [FieldViolation(field, f"must be at most {MAX_VERSION} letters, digits, '.', '_', '+' or '-', "
                                      f"got {names.shown(version)}")]
    return []


_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*", re.ASCII)


def check_address(address: str, field: str = "address") -> list[FieldViolation]:
    if not address:
        return [FieldViolation(field, "required: an IP address or host name the instance is reachable at")]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_unspecified or ip.is_multicast:
            return [FieldViolation(field, f"must be an address the instance is reachable at, got {address!r} "
                                          "(an unspecified or multicast address)")]
        return []
    if HOSTNAME.fullmatch(address) and not address.replace(".", "").isdigit():
        return []
    return [FieldViolation(field, f"must be an IP address or a DNS host name, got {names.shown(address)}")]


def check_port(port: int, field: str = "port") -> list[FieldViolation]:
    if not 1 <= port <= 65535:
        return [FieldViolation(field, f"must be 1..65535, got {port}")]
    return []


def check_tags(tags: Sequence[str], field: str = "tags") -> list[FieldViolation]:
    if len(tags) > MAX_TAGS:
        return [FieldViolation(field, f"at most {MAX_TAGS} tags, got {len(tags)}")]
    problems = []
    for i, tag in enumerate(tags):
        if not tag or len(tag) > MAX_TAG or not tag.isprintable() or any(c.isspace() for c in tag):
            problems.append(FieldViolation(f"{field}[{i}]", f"must be 1..{MAX_TAG} printable characters without "
                                                            "spaces"))
    return problems


def check_metadata(metadata: Mapping[str, str], field: str = "metadata") -> list[FieldViolation]:
    problems = []
    if len(metadata) > MAX_META_PAIRS:
        return [FieldViolation(field, f"at most {MAX_META_PAIRS} pairs, got {len(metadata)}")]
    for key, value in sorted(metadata.items()):
        where = f"{field}[{names.shown(key, 32)}]"
        if not META_KEY.fullmatch(key):
            problems.append(FieldViolation(where, "keys must be 1..128 letters, digits, '_' or '-'"))
        elif key.lower().startswith(RESERVED_META_PREFIXES):
            problems.append(FieldViolation(where, f"keys starting with {RESERVED_META_PREFIXES} are reserved"))
        if len(value) > MAX_META_VALUE or not value.isprintable():
            problems.append(FieldViolation(where, f"values are at most {MAX_META_VALUE} printable characters"))
    return problems


def check_health_service(name: str, field: str) -> list[FieldViolation]:
    """The service name Consul asks the instance's grpc.health.v1.Health about (empty: the server)."""
    if name and not _HEALTH_SERVICE.fullmatch(name):
        return [FieldViolation(field, f"must be a gRPC service name (letters, digits, '_' and '.', at most 255), "
                                      f"got {names.shown(name)}")]
    return []


_HEALTH_SERVICE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,254}", re.ASCII)


def check_duration(seconds: float, field: str, minimum: float, maximum: float) -> list[FieldViolation]:
    if not minimum <= seconds <= maximum:
        return [FieldViolation(field, f"must be between {minimum:g}s and {maximum:g}s, got {seconds:g}s")]
    return []


def check_note(note: str) -> list[FieldViolation]:
    return names.printable_text(note, "note", MAX_NOTE, multiline=True)
