"""The sync client adapter: one `grpc.intercept_channel` interceptor running a chain of client concerns."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from controlplane.interceptors._chain import RAISED, ClientChain, end_scopes, missing_pairs
from controlplane.interceptors.call import CallKind, ClientConcern, Outcome, OutgoingCall, Rejection, Scope
from controlplane.interceptors.local_errors import LocalRpcError

__all__ = ["CallDetails", "ClientInterceptor", "details_for", "refused", "replace_details", "stamped"]

_OK = grpc.StatusCode.OK


class CallDetails(
    collections.namedtuple(
        "CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """`grpc.ClientCallDetails` for sync channels, with a changed timeout or metadata."""


def replace_details(details: Any, **changes: Any) -> Any:
    """`details` with some fields changed; works for sync and grpc.aio call details."""
    replace = getattr(details, "_replace", None)
    if replace is not None:
        return replace(**changes)
    fields = {name: getattr(details, name, None) for name in CallDetails._fields}
    fields.update(changes)
    return CallDetails(**fields)


def details_for(details: Any, call: OutgoingCall, metadata_type: Callable[..., Any] | None = None) -> Any:
    """The call details as concerns left them: their timeout, the request metadata they added.

    metadata_type: how the metadata is built from pairs (grpc.aio wants `grpc.aio.Metadata`; sync, a tuple).
    """
    if call.metadata:
        pairs = (*tuple(details.metadata or ()), *call.metadata)
        merged = metadata_type(*pairs) if metadata_type is not None else pairs
        return replace_details(details, timeout=call.timeout, metadata=merged)
    if call.timeout != details.timeout:
        return replace_details(details, timeout=call.timeout)
    return details


def _outcome_of(future: Any, with_response: bool = False) -> Outcome:
    code = future.code()
    if code is not _OK:
        return Outcome(code, future.details())
    return Outcome(code, response=future.result() if with_response else None)


def _end_when_done(scopes: list[Scope]) -> Callable[[Any], None]:
    def done(future: Any) -> None:
        end_scopes(scopes, _outcome_of(future))

    return done


def refused(rejection: Rejection) -> LocalRpcError:
    """The error a call refused locally (by a concern's `Rejection`) fails with, its cause attached."""
    return LocalRpcError(rejection.code, rejection.details, rejection.metadata, cause=rejection.cause)


def stamped(failed: Any, call: OutgoingCall) -> Any:
    """A failed call or RpcError with the trailing metadata the call's concerns give failures (a trace id,
    say) that it came back without; `failed` itself when it lacks none."""
    extra = missing_pairs(failed.trailing_metadata(), call.error_metadata) if call.error_metadata else ()
    return LocalRpcError.with_extra_trailing(failed, extra) if extra else failed


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Runs a chain of concerns for every kind of call on a sync channel (`grpc.intercept_channel`)."""

    def __init__(self, concerns: Sequence[ClientConcern]) -> None:
        self._chain = ClientChain(concerns)

    def _intercept(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any, kind: CallKind) -> Any:
        try:
            call, scopes = self._chain.start(details, kind, request)
        except Rejection as rejection:
            return refused(rejection)
        try:
            outcome = continuation(details_for(details, call), request)
        except BaseException:
            end_scopes(scopes, RAISED)
            raise
        if not outcome.done():  # futures and response streams: judged when they end
            outcome.add_done_callback(_end_when_done(scopes))
            return outcome
        ended = _outcome_of(outcome, with_response=call.wants_response and not kind.response_streaming)
        end_scopes(scopes, ended)
        # Stamp RPC failures only: an exception raised on the client side (a serializer's, say) stays as is.
        if ended.code is not _OK and call.error_metadata and isinstance(outcome.exception(), grpc.RpcError):
            return stamped(outcome, call)
        return outcome

    @property
    def chain(self) -> ClientChain:
        """The concerns this interceptor runs (`intercepted_channel` runs them without grpcio's layer)."""
        return self._chain

    def intercept_unary_unary(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request, CallKind.UNARY_UNARY)

    def intercept_unary_stream(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request, CallKind.UNARY_STREAM)

    def intercept_stream_unary(self, continuation: Callable[[Any, Any], Any], details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests, CallKind.STREAM_UNARY)

    def intercept_stream_stream(self, continuation: Callable[[Any, Any], Any], details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests, CallKind.STREAM_STREAM)
