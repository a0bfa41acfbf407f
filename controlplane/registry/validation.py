"""Checks on registry requests. Every problem is reported at once, before anything is written."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from controlplane.errors import FieldViolation

SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
RESERVED_META_PREFIXES = ("consul-", "cp-")
MAX_META_PAIRS = 64
MAX_META_VALUE = 512
MAX_TAG = 255


def check_service_name(name: str, field: str = "service") -> list[FieldViolation]:
    if not name:
        return [FieldViolation(field, "required: the service name")]
    if not SERVICE_NAME.match(name):
        return [
            FieldViolation(
                field,
                "must be 1..63 lowercase letters, digits or '-', starting with a letter, got " + repr(name),
            )
        ]
    return []


def check_instance_id(instance_id: str, field: str = "instance_id", required: bool = True) -> list[FieldViolation]:
    if not instance_id:
        return [FieldViolation(field, "required: the instance id")] if required else []
    if not INSTANCE_ID.match(instance_id):
        return [
            FieldViolation(
                field,
                "must be 1..128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit, "
                f"got {instance_id!r}",
            )
        ]
    return []


def check_address(address: str, field: str = "address") -> list[FieldViolation]:
    if not address:
        return [FieldViolation(field, "required: an IP address or host name the instance is reachable at")]
    try:
        ipaddress.ip_address(address)
        return []
    except ValueError:
        pass
    if HOSTNAME.match(address) and not address.replace(".", "").isdigit():
        return []
    return [FieldViolation(field, f"must be an IP address or a DNS host name, got {address!r}")]


def check_port(port: int, field: str = "port") -> list[FieldViolation]:
    if not 1 <= port <= 65535:
        return [FieldViolation(field, f"must be 1..65535, got {port}")]
    return []


def check_tags(tags: Sequence[str], field: str = "tags") -> list[FieldViolation]:
    problems = []
    for i, tag in enumerate(tags):
        if not tag or len(tag) > MAX_TAG or any(c.isspace() for c in tag):
            problems.append(FieldViolation(f"{field}[{i}]", f"must be 1..{MAX_TAG} characters without spaces"))
    return problems


def check_metadata(metadata: Mapping[str, str], field: str = "metadata") -> list[FieldViolation]:
    problems = []
    if len(metadata) > MAX_META_PAIRS:
        problems.append(FieldViolation(field, f"at most {MAX_META_PAIRS} pairs, got {len(metadata)}"))
    for key, value in sorted(metadata.items()):
        if not META_KEY.match(key):
            problems.append(FieldViolation(f"{field}[{key!r}]", "keys must be 1..128 letters, digits, '_' or '-'"))
        elif key.lower().startswith(RESERVED_META_PREFIXES):
            problems.append(
                FieldViolation(f"{field}[{key!r}]", f"keys starting with {RESERVED_META_PREFIXES} are reserved")
            )
        if len(value) > MAX_META_VALUE:
            problems.append(FieldViolation(f"{field}[{key!r}]", f"values are at most {MAX_META_VALUE} characters"))
    return problems


def check_duration(seconds: float, field: str, minimum: float, maximum: float) -> list[FieldViolation]:
    if not minimum <= seconds <= maximum:
        return [FieldViolation(field, f"must be between {minimum:g}s and {maximum:g}s, got {seconds:g}s")]
    return []
