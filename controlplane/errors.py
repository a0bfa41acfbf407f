"""Domain errors and their one mapping to gRPC status codes.

Servicers raise these (or let stores raise them); `grpc_status_for` turns each into the status a
client sees, with `google.rpc.BadRequest` field violations for validation failures. Nothing a
client sends should ever surface as UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from controlplane.text import cut


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path in the request (e.g. "check.ttl") and what is allowed."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a servicer maps to a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# An error travels in gRPC trailing metadata (message and details), which clients cap at a few KiB:
# a status lists at most MAX_VIOLATIONS violations and cuts long texts, however bad the request.
MAX_VIOLATIONS = 10
MAX_FIELD = 120
MAX_DESCRIPTION = 300
MAX_MESSAGE = 1000


class ValidationError(DomainError):
    """The request is malformed; nothing was changed.

    Keeps the first MAX_VIOLATIONS violations (texts cut to size) and says how many more there were.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        kept = [FieldViolation(cut(v.field, MAX_FIELD), cut(v.description, MAX_DESCRIPTION))
                for v in violations[:MAX_VIOLATIONS]]
        if len(violations) > MAX_VIOLATIONS:
            more = len(violations) - MAX_VIOLATIONS
            kept.append(FieldViolation("", f"and {more} more problem{'s' if more > 1 else ''} not listed"))
        self.violations = kept
        summary = "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in kept)
        super().__init__(cut(message or f"invalid request: {summary}", MAX_MESSAGE))

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        return cls([FieldViolation(field, description)])


def raise_if(problems: list[FieldViolation]) -> None:
    """Raise ValidationError when a check found any problem."""
    if problems:
        raise ValidationError(problems)


class NotFoundError(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PreconditionError(DomainError):
    """The request is well-formed but the system is not in a state that allows it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ConsulAccessDenied(PreconditionError):
    """Consul refused the control plane's ACL token (none, unknown, or without the permission): a deployment
    problem, not the caller's, and one retrying does not mend."""


class ConflictError(DomainError):
    """A compare-and-set lost to a concurrent writer; re-read and try again."""

    code = grpc.StatusCode.ABORTED


class LimitExceeded(DomainError):
    """A documented limit (watches, sizes) would be passed; the request itself may be fine later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ConsulUnavailable(DomainError):
    """Consul could not be reached or could not serve the request; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE


class OutcomeUnknown(ConsulUnavailable):
    """A write was sent to Consul but not answered in time: it may have been applied or not, so this is
    DEADLINE_EXCEEDED (gRPC's code for "may have completed"), not UNAVAILABLE. Read before retrying
    unless the write is idempotent or compare-and-set guarded."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


def grpc_status_for(error: DomainError) -> grpc.Status:
    """The rich gRPC status for a domain error (field violations included for validation errors)."""
    status = status_pb2.Status(code=error.code.value[0], message=cut(error.message, MAX_MESSAGE))
    if isinstance(error, ValidationError):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def field_violations(error: grpc.RpcError) -> list[FieldViolation]:
    """The BadRequest field violations carried by a failed call (client side helper)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return found




def maps_domain_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a servicer method so DomainErrors end the call with their gRPC status.

    Works for asyncio methods (coroutines, async generators) and for sync ones (functions, generators).
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def async_stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except DomainError as error:
                await context.abort_with_status(grpc_status_for(error))

        return async_stream

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def async_unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await method(self, request, context)
            except DomainError as error:
                await context.abort_with_status(grpc_status_for(error))

        return async_unary

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def sync_stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(self, request, context)
            except DomainError as error:
                context.abort_with_status(grpc_status_for(error))

        return sync_stream

    @functools.wraps(method)
    def sync_unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except DomainError as error:
            context.abort_with_status(grpc_status_for(error))

    return sync_unary
