"""The asyncio client adapter: grpc.aio wants one interceptor object per kind of call, all sharing one chain.

Failed calls are handed back as finished call objects, never raised (see `local_errors.failed_aio_call`):
interceptors further out expect a call object and read its status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from controlplane.interceptors._chain import CALLER_CANCELLED, RAISED, ClientChain, end_scopes, missing_pairs
from controlplane.interceptors._sync_client import details_for
from controlplane.interceptors.call import CallKind, ClientConcern, Outcome, OutgoingCall, Rejection, Scope
from controlplane.interceptors.local_errors import aio_error, failed_aio_call

__all__ = ["aio_client_chain"]

_OK = grpc.StatusCode.OK


def aio_refused(kind: CallKind, rejection: Rejection) -> Any:
    """The finished, failed call a call refused locally (by a concern's `Rejection`) is, its cause attached."""
    return failed_aio_call(kind, aio_error(rejection.code, rejection.details, rejection.metadata, rejection.cause))


def failure_trailers(trailing: Any, call: OutgoingCall) -> grpc.aio.Metadata | None:
    """A failed call's trailing metadata with what the call's concerns give failures (a trace id, say) that
    it came back without; None when it lacks none."""
    extra = missing_pairs(trailing, call.error_metadata) if call.error_metadata else ()
    return grpc.aio.Metadata(*tuple(trailing or ()), *extra) if extra else None


class _AioChainInterceptor:
    kind = CallKind.UNARY_UNARY

    def __init__(self, chain: ClientChain) -> None:
        self._chain = chain
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def chain(self) -> ClientChain:
        """The concerns this interceptor runs (`intercepted_aio_channel` runs them without grpc.aio's layer)."""
        return self._chain

    async def _unary_response(self, continuation: Any, details: Any, request: Any) -> Any:
        try:
            call, scopes = await self._chain.start_async(details, self.kind, request)
        except Rejection as rejection:
            return aio_refused(self.kind, rejection)
        try:
            rpc = await continuation(details_for(details, call, grpc.aio.Metadata), request)
            code = await rpc.code()
            if code is not _OK:
                outcome = Outcome(code, await rpc.details())
            else:
                outcome = Outcome(code, response=await rpc if call.wants_response else None)
        except asyncio.CancelledError:
            end_scopes(scopes, CALLER_CANCELLED)
            raise
        except BaseException:
            end_scopes(scopes, RAISED)
            raise
        end_scopes(scopes, outcome)
        if code is not _OK and call.error_metadata:
            trailing = failure_trailers(await rpc.trailing_metadata(), call)
            if trailing is not None:
                error = grpc.aio.AioRpcError(code, await rpc.initial_metadata(), trailing, outcome.details,
                                             await rpc.debug_error_string())
                return failed_aio_call(self.kind, error)
        return rpc

    async def _stream_response(self, continuation: Any, details: Any, request: Any) -> Any:
        try:
            call, scopes = await self._chain.start_async(details, self.kind, request)
        except Rejection as rejection:
            return aio_refused(self.kind, rejection)
        try:
            rpc = await continuation(details_for(details, call, grpc.aio.Metadata), request)
        except BaseException:
            end_scopes(scopes, RAISED)
            raise
        rpc.add_done_callback(lambda done: self._read_final_status(done, scopes))
        return rpc

    def _read_final_status(self, rpc: Any, scopes: list[Scope]) -> None:
        # grpc.aio only offers the status as coroutines; they are ready by now, so this task ends at once.
        task = asyncio.ensure_future(_outcome_of(rpc))
        self._pending.add(task)
        task.add_done_callback(lambda t: self._end_from(t, scopes))

    def _end_from(self, task: asyncio.Task[Outcome], scopes: list[Scope]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            outcome = CALLER_CANCELLED
        elif task.exception() is not None:
            outcome = Outcome(grpc.StatusCode.UNKNOWN, str(task.exception()))
        else:
            outcome = task.result()
        end_scopes(scopes, outcome)


async def _outcome_of(rpc: Any) -> Outcome:
    code = await rpc.code()
    return Outcome(code, await rpc.details() if code is not _OK else None)


class AioUnaryUnaryInterceptor(_AioChainInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    kind = CallKind.UNARY_UNARY

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._unary_response(continuation, client_call_details, request)


class AioUnaryStreamInterceptor(_AioChainInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    kind = CallKind.UNARY_STREAM

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._stream_response(continuation, client_call_details, request)


class AioStreamUnaryInterceptor(_AioChainInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    kind = CallKind.STREAM_UNARY

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._unary_response(continuation, client_call_details, request_iterator)


class AioStreamStreamInterceptor(_AioChainInterceptor, grpc.aio.StreamStreamClientInterceptor):
    kind = CallKind.STREAM_STREAM

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._stream_response(continuation, client_call_details, request_iterator)


def aio_client_chain(concerns: Sequence[ClientConcern]) -> list[grpc.aio.ClientInterceptor]:
    """The asyncio adapter for a chain of concerns: one interceptor per kind of call, as grpc.aio wants."""
    chain = ClientChain(concerns)
    return [
        AioUnaryUnaryInterceptor(chain),
        AioUnaryStreamInterceptor(chain),
        AioStreamUnaryInterceptor(chain),
        AioStreamStreamInterceptor(chain),
    ]
