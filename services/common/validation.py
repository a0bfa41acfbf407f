"""Field checks shared by the demo services' request validation."""

from __future__ import annotations

from controlplane import names
from controlplane.errors import FieldViolation, ValidationError


def require_id(value: str, field: str, what: str) -> list[FieldViolation]:
    """An id (user, order, sku...): the control plane's identifier grammar, matched in full."""
    if not value:
        return [FieldViolation(field, f"required: the {what}")]
    return names.IDENTIFIER.check(value, field)


def text(value: str, field: str, limit: int) -> list[FieldViolation]:
    """Free text shown to people: bounded, without control or direction-override characters."""
    return names.printable_text(value, field, limit)


def raise_if(problems: list[FieldViolation]) -> None:
    if problems:
        raise ValidationError(problems)
