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
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


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


class ValidationError(DomainError):
    """The request is malformed; nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or f"invalid request: {summary}")

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        return cls([FieldViolation(field, description)])


class NotFoundError(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PreconditionError(DomainError):
    """The request is well-formed but the system is not in a state that allows it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ConflictError(DomainError):
    """A compare-and-set lost to a concurrent writer; re-read and try again."""

    code = grpc.StatusCode.ABORTED


class ConsulUnavailable(DomainError):
    """Consul could not be reached or could not serve the request; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE


def grpc_status_for(error: DomainError) -> grpc.Status:
    """The rich gRPC status for a domain error (field violations included for validation errors)."""
    status = status_pb2.Status(code=_CODE_VALUES[error.code], message=error.message)
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


_CODE_VALUES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
}


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
