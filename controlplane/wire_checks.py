"""Checks on well-known protobuf values that decode fine but cannot be used or stored as they are.

A `google.protobuf.Duration` may carry nanos outside ±999,999,999 or with the other sign than its
seconds; a `Struct` may hold NaN or Infinity (JSON has neither) or nest deeper than protobuf decodes
again when the control plane reads it back. Each check returns field violations, never raises.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import duration_pb2, struct_pb2

from controlplane.errors import FieldViolation

# Containers (objects and arrays) a stored JSON value may nest; protobuf refuses to decode much deeper.
MAX_DEPTH = 32


def duration_seconds(duration: duration_pb2.Duration, field: str) -> tuple[float, list[FieldViolation]]:
    """The duration in seconds, with a violation when protobuf's own rules for a Duration are broken."""
    seconds, nanos = duration.seconds, duration.nanos
    if not -999_999_999 <= nanos <= 999_999_999 or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        return 0.0, [FieldViolation(field, "is not a valid Duration: nanos must be within ±999,999,999 and have "
                                           "the sign of seconds")]
    if abs(seconds) > 315_576_000_000:
        return 0.0, [FieldViolation(field, "is not a valid Duration: at most 10,000 years")]
    return seconds + nanos / 1e9, []


def struct_problems(value: struct_pb2.Struct | struct_pb2.Value | struct_pb2.ListValue, field: str,
                    max_depth: int = MAX_DEPTH) -> list[FieldViolation]:
    """Non-finite numbers and too deep nesting in a Struct, Value or ListValue (one violation each kind)."""
    problems: list[FieldViolation] = []
    deepest = 0
    stack: list[tuple[Any, int, str]] = [(value, 0, field)]
    bad_number: str | None = None
    while stack:
        node, level, path = stack.pop()
        if isinstance(node, struct_pb2.Value):
            kind = node.WhichOneof("kind")
            if kind == "number_value":
                if bad_number is None and not math.isfinite(node.number_value):
                    bad_number = path
                continue
            if kind == "struct_value":
                node = node.struct_value
            elif kind == "list_value":
                node = node.list_value
            else:
                continue
        deepest = max(deepest, level + 1)
        if deepest > max_depth:
            break
        if isinstance(node, struct_pb2.Struct):
            stack += [(child, level + 1, f"{path}.{key}") for key, child in node.fields.items()]
        else:
            stack += [(child, level + 1, f"{path}[{i}]") for i, child in enumerate(node.values)]
    if deepest > max_depth:
        problems.append(FieldViolation(field, f"nests objects and arrays more than {max_depth} deep"))
    if bad_number is not None:
        problems.append(FieldViolation(bad_number, "must be a finite number (JSON has no NaN or Infinity)"))
    return problems
