"""Checks on config requests. Every problem is reported at once, before anything is read or written.

Service names follow the registry's rule (they become Consul key segments); environment names follow the
same rule, and "default" is reserved (the default layer is the empty environment). Sizes keep every write
inside Consul's limits with a clear message instead of Consul's raw 413.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane import names
from controlplane.config.document import (
    DELETE,
    SECRET,
    canonical_json,
    depth,
    is_delete,
    non_finite_numbers,
    render_path,
)
from controlplane.config.document import walk as walk_document
from controlplane.config.secrets import check_references
from controlplane.errors import FieldViolation, raise_if
from controlplane.registry.validation import check_service_name

RESERVED_ENVIRONMENTS = frozenset({"default"})
# Containers nested deeper than this cannot cross the wire: protobuf refuses to decode them.
MAX_DEPTH = 32
MAX_AUTHOR = 256
MAX_MESSAGE = 1024
# What EvaluateFlag is told about its subject: flags match on a few attributes, so more is a mistake.
MAX_SUBJECT_KEY = 512
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTE_VALUE = 512

__all__ = [
    "MAX_DEPTH",
    "check_content",
    "check_environment",
    "check_flag_name",
    "check_service_name",
    "check_shape",
    "check_text",
    "raise_if",
]


def check_environment(name: str, field: str = "environment") -> list[FieldViolation]:
    """An environment name; empty (the default layer) is fine."""
    if not name:
        return []
    if name in RESERVED_ENVIRONMENTS:
        return [FieldViolation(field, f"{name!r} is reserved: leave the environment empty for the default layer")]
    return names.ENVIRONMENT.check(name, field)


def check_flag_name(name: str, field: str = "flag") -> list[FieldViolation]:
    return names.FLAG.check(name, field)


def check_flag_subject(subject_key: str, attributes: Mapping[str, str]) -> list[FieldViolation]:
    """An EvaluateFlag subject: a bounded key, at most MAX_ATTRIBUTES attributes of bounded size."""
    problems = []
    if len(subject_key) > MAX_SUBJECT_KEY:
        problems.append(FieldViolation("subject_key", f"at most {MAX_SUBJECT_KEY} characters, got {len(subject_key)}"))
    if len(attributes) > MAX_ATTRIBUTES:
        return [*problems, FieldViolation("attributes", f"at most {MAX_ATTRIBUTES} pairs, got {len(attributes)}")]
    for key, value in sorted(attributes.items()):
        if not 0 < len(key) <= MAX_ATTRIBUTE_KEY or len(value) > MAX_ATTRIBUTE_VALUE:
            problems.append(FieldViolation(f"attributes[{names.shown(key, 32)}]", f"keys are 1..{MAX_ATTRIBUTE_KEY} "
                                           f"characters, values at most {MAX_ATTRIBUTE_VALUE}"))
    return problems


def check_text(value: str, field: str, limit: int, *, multiline: bool = False) -> list[FieldViolation]:
    return names.printable_text(value, field, limit, multiline=multiline)


def check_shape(value: Mapping[str, Any], *, max_bytes: int, field: str) -> list[FieldViolation]:
    """Problems any stored JSON object can have: depth, non-finite numbers, size."""
    if depth(value) > MAX_DEPTH:
        return [FieldViolation(field, f"nests objects and arrays {depth(value)} deep; at most {MAX_DEPTH}")]
    problems = [
        FieldViolation(render_path(path, field), "must be a finite number (JSON has no NaN or Infinity)")
        for path in non_finite_numbers(value)
    ]
    if problems:
        return problems
    size = len(canonical_json(value))
    if size > max_bytes:
        problems.append(
            FieldViolation(
                field,
                f"is {size} bytes as JSON; at most {max_bytes} bytes are accepted "
                "(Consul stores each write in one transaction of limited size)",
            )
        )
    return problems


def check_content(
    content: Mapping[str, Any], *, max_bytes: int, default_layer: bool, field: str = "content"
) -> list[FieldViolation]:
    """Problems of one layer's content that no schema is needed to see (shape, then markers)."""
    problems = check_shape(content, max_bytes=max_bytes, field=field)
    if problems:
        return problems
    if DELETE in content or SECRET in content:
        return [FieldViolation(field, "a whole layer cannot be a deletion or a secret reference: it is an object")]
    return check_references(content, field) + _check_deletions(content, default_layer, field)


def _check_deletions(content: Mapping[str, Any], default_layer: bool, field: str) -> list[FieldViolation]:
    problems = []
    for path, value in walk_document(content):
        if not (isinstance(value, dict) and DELETE in value):
            continue
        where = render_path(path, field)
        if not is_delete(value):
            problems.append(FieldViolation(where, 'a deletion is exactly {"$delete": true}'))
        elif default_layer:
            problems.append(FieldViolation(where, '{"$delete": true} only has a meaning in an environment layer'))
        elif path and isinstance(path[-1], int):
            problems.append(FieldViolation(where, '{"$delete": true} cannot be an array element: arrays replace whole'))
    return problems

