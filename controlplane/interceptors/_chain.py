"""Runs concerns in order around one call: picks those whose selector accepts the method, starts them,
ends their scopes in reverse order, and keeps one concern's failure from breaking the call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from controlplane.interceptors.call import (
    CallKind,
    ClientConcern,
    IncomingCall,
    Method,
    Outcome,
    OutgoingCall,
    Rejection,
    Scope,
    ServerConcern,
    method_of,
)

log = logging.getLogger(__name__)

_CANCELLED = Outcome(grpc.StatusCode.CANCELLED, "cancelled before it was sent")
RAISED = Outcome(grpc.StatusCode.UNKNOWN, "the call raised before it was sent")
CALLER_CANCELLED = Outcome(grpc.StatusCode.CANCELLED, "cancelled by the caller")


def missing_pairs(metadata: Any, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of `extra` whose key `metadata` lacks (what a failed call gets added to its trailers)."""
    present = {k for k, _ in metadata or ()}
    return [(k, v) for k, v in extra if k not in present]


def end_scopes(scopes: list[Scope], outcome: Outcome) -> None:
    """End every scope, innermost first; a scope that raises is logged, never lets the others down."""
    for i in range(len(scopes) - 1, -1, -1):
        try:
            scopes[i].end(outcome)
        except Exception:
            log.exception("interceptor scope %s failed in end()", type(scopes[i]).__name__)


class ClientChain:
    """The client concerns of one interceptor, selected per method once and cached."""

    __slots__ = ("_by_method", "_concerns")

    def __init__(self, concerns: Sequence[ClientConcern]) -> None:
        self._concerns = tuple(concerns)
        self._by_method: dict[str | bytes, tuple[Method, tuple[ClientConcern, ...], bool, bool]] = {}

    def _select(self, raw: str | bytes) -> tuple[Method, tuple[ClientConcern, ...], bool, bool]:
        """(method, its concerns, whether one waits, whether one reads the response), cached per method."""
        entry = self._by_method.get(raw)
        if entry is None:
            method = method_of(raw)
            concerns = tuple(c for c in self._concerns if c.methods.accepts(method.full))
            entry = (method, concerns, any(c.waits for c in concerns), any(c.wants_response for c in concerns))
            if len(self._by_method) < 10_000:
                self._by_method[raw] = entry
        return entry

    def waits(self, raw_method: str | bytes) -> bool:
        """Whether a concern of this method may wait before the call goes out (asyncio: `start_async`)."""
        return self._select(raw_method)[2]

    def start(self, details: Any, kind: CallKind, request: Any = None) -> tuple[OutgoingCall, list[Scope]]:
        """Start every concern; on a `Rejection`, the scopes already open end with its status and it propagates."""
        method, concerns, _, wants_response = self._select(details.method)
        call = OutgoingCall(method, kind, details.timeout, request)
        call.wants_response = wants_response
        scopes: list[Scope] = []
        try:
            for concern in concerns:
                scope = concern.start(call)
                if scope is not None:
                    scopes.append(scope)
        except Rejection as rejection:
            rejection.metadata = (*rejection.metadata, *call.error_metadata)
            end_scopes(scopes, Outcome(rejection.code, rejection.details))
            raise
        return call, scopes

    async def start_async(self, details: Any, kind: CallKind, request: Any = None) -> tuple[OutgoingCall, list[Scope]]:
        """`start()` for asyncio channels: concerns that wait are awaited."""
        method, concerns, waits, wants_response = self._select(details.method)
        if not waits:
            return self.start(details, kind, request)
        call = OutgoingCall(method, kind, details.timeout, request)
        call.wants_response = wants_response
        scopes: list[Scope] = []
        try:
            for concern in concerns:
                scope = await concern.start_async(call) if concern.waits else concern.start(call)
                if scope is not None:
                    scopes.append(scope)
        except Rejection as rejection:
            rejection.metadata = (*rejection.metadata, *call.error_metadata)
            end_scopes(scopes, Outcome(rejection.code, rejection.details))
            raise
        except BaseException:
            end_scopes(scopes, _CANCELLED)
            raise
        return call, scopes


class ServerChain:
    """The server concerns of one interceptor, selected per method once and cached."""

    __slots__ = ("_by_method", "_concerns")

    def __init__(self, concerns: Sequence[ServerConcern]) -> None:
        self._concerns = tuple(concerns)
        self._by_method: dict[str, tuple[Method, tuple[ServerConcern, ...]]] = {}

    def select(self, raw: str) -> tuple[Method, tuple[ServerConcern, ...]]:
        entry = self._by_method.get(raw)
        if entry is None:
            method = method_of(raw)
            entry = (method, tuple(c for c in self._concerns if c.methods.accepts(method.full)))
            if len(self._by_method) < 10_000:
                self._by_method[raw] = entry
        return entry

    @staticmethod
    def start(concerns: tuple[ServerConcern, ...], call: IncomingCall) -> list[Scope]:
        scopes: list[Scope] = []
        for concern in concerns:
            scope = concern.start(call)
            if scope is not None:
                scopes.append(scope)
        return scopes


def server_outcome(context: Any, error: BaseException | None) -> Outcome:
    """The status a handler left: the code it set or aborted with; else UNKNOWN if it raised, OK if not.

    A cancelled asyncio handler, or a response stream closed early, ended because its caller went away:
    CANCELLED.
    """
    code = _context_code(context)
    if code is None or (code is grpc.StatusCode.OK and error is not None and not _is_abort(error)):
        if error is None:
            code = grpc.StatusCode.OK
        elif isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.UNKNOWN
    bug = error if error is not None and not _is_abort(error) and isinstance(error, Exception) else None
    return Outcome(code, _context_details(context), bug)


def _is_abort(error: BaseException) -> bool:
    # Sync servers abort with a bare Exception; grpc.aio with AbortError.
    return type(error) is Exception or isinstance(error, grpc.aio.AbortError)


_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _context_code(context: Any) -> grpc.StatusCode | None:
    read = getattr(context, "code", None)
    if read is None:
        return None
    try:
        code = read()
    except Exception:  # a context that cannot tell (older grpcio, test doubles)
        return None
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    return _CODES_BY_NUMBER.get(int(code))  # grpc.aio answers with cygrpc's integer codes


def _context_details(context: Any) -> str | None:
    read = getattr(context, "details", None)
    if read is None:
        return None
    try:
        details = read()
    except Exception:
        return None
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details or None
