"""Field checks shared by the demo services' request validation."""

from __future__ import annotations

import re

from controlplane.errors import FieldViolation, ValidationError

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def require_id(value: str, field: str, what: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, f"required: the {what}")]
    if not IDENTIFIER.match(value):
        return [FieldViolation(field, f"must be 1..128 letters, digits, '_', '.', ':' or '-', got {value!r}")]
    return []


def raise_if(problems: list[FieldViolation]) -> None:
    if problems:
        raise ValidationError(problems)
