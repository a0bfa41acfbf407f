"""Field checks shared by the demo services' request validation."""

from __future__ import annotations

import grpc

from controlplane import names
from controlplane.errors import FieldViolation
from controlplane.saga.invoker import SAGA_ID_KEY


def require_id(value: str, field: str, what: str) -> list[FieldViolation]:
    """An id (user, order, sku...): the control plane's identifier grammar, matched in full."""
    if not value:
        return [FieldViolation(field, f"required: the {what}")]
    return names.IDENTIFIER.check(value, field)


def text(value: str, field: str, limit: int) -> list[FieldViolation]:
    """Free text shown to people: bounded, without control or direction-override characters."""
    return names.printable_text(value, field, limit)


def calling_saga(context: grpc.ServicerContext) -> str:
    """The id of the saga whose orchestrator sent this call (`x-saga-id` metadata), or ""."""
    return next((value for key, value in context.invocation_metadata() or () if key == SAGA_ID_KEY), "")


def called_by_saga(context: grpc.ServicerContext) -> bool:
    """Whether a saga's orchestrator sent this call.

    Undo operations (Release, Refund) are compensations: for a saga, undoing what never happened is a
    harmless no-op (the action's outcome may have been unknown); for anyone else it is NOT_FOUND.
    """
    return bool(calling_saga(context))

