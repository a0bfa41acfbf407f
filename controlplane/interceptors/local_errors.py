"""The errors a caller gets for calls that failed without a server's answer, sync and asyncio.

`LocalRpcError` (sync) and `LocalAioRpcError` (asyncio) carry `.cause`, the typed reason of a local refusal
(`BreakerOpen`, `BulkheadFull`, `BudgetSpent`). The asyncio adapter hands failed calls back as finished call
objects (`failed_aio_call`) rather than raising, so interceptors further out still see a call and its status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from controlplane.interceptors.call import CallKind, Metadata

__all__ = ["LocalAioRpcError", "LocalRpcError", "aio_error", "failed_aio_call"]



class LocalRpcError(grpc.RpcError, grpc.Call, grpc.Future):
    """A failed call, for sync channels: raised by `result()`, by iteration, and usable as a `grpc.Call`.

    Used for calls a concern refused before they reached the network, and to add trailing metadata
    (the trace id) to a call that failed without any.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: Metadata = (),
        initial_metadata: Metadata = (),
        debug_error_string: str | None = None,
        cause: Exception | None = None,
    ) -> None:
        super().__init__()
        self.cause = cause  # the typed reason of a local refusal (see Rejection), None otherwise
        self._code = code
        self._details = details
        self._trailing = trailing_metadata
        self._initial = initial_metadata
        self._debug = debug_error_string

    @classmethod
    def with_extra_trailing(cls, error: Any, extra: Sequence[tuple[str, str]]) -> LocalRpcError:
        """A copy of a finished, failed call or RpcError with `extra` added to its trailing metadata."""
        debug = getattr(error, "debug_error_string", None)
        return cls(
            error.code(),
            error.details() or "",
            tuple(error.trailing_metadata() or ()) + tuple(extra),
            tuple(error.initial_metadata() or ()),
            debug() if callable(debug) else None,
        )

    def __str__(self) -> str:
        return f'<{type(self).__name__}: status = {self._code}, details = "{self._details}">'

    __repr__ = __str__

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def initial_metadata(self) -> Metadata:
        return self._initial

    def debug_error_string(self) -> str | None:
        return self._debug

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> BaseException:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def __iter__(self) -> LocalRpcError:
        return self

    def __next__(self) -> Any:
        raise self


class _FailedAioCall:
    """A finished, failed grpc.aio call: what the asyncio adapter returns instead of raising.

    Interceptors further out (OpenTelemetry's among them) expect a call object back and read its status;
    an exception raised from inside would skip their bookkeeping (OpenTelemetry would never end its span).
    """

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        self._error = error

    def cancelled(self) -> bool:
        return self._error.code() is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    async def initial_metadata(self) -> Any:
        return self._error.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return self._error.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        return self._error.code()

    async def details(self) -> str | None:
        return self._error.details()

    async def debug_error_string(self) -> str | None:
        return self._error.debug_error_string()

    async def wait_for_connection(self) -> None:
        raise self._error

    # unary responses
    def __await__(self) -> Any:
        raise self._error
        yield  # a generator, as __await__ must be

    # streaming responses
    def __aiter__(self) -> _FailedAioCall:
        return self

    async def __anext__(self) -> Any:
        raise self._error

    async def read(self) -> Any:
        raise self._error

    # streaming requests
    async def write(self, request: Any) -> None:
        raise self._error

    async def done_writing(self) -> None:
        return None


class _FailedUnaryUnaryCall(_FailedAioCall, grpc.aio.UnaryUnaryCall):
    pass


class _FailedUnaryStreamCall(_FailedAioCall, grpc.aio.UnaryStreamCall):
    pass


class _FailedStreamUnaryCall(_FailedAioCall, grpc.aio.StreamUnaryCall):
    pass


class _FailedStreamStreamCall(_FailedAioCall, grpc.aio.StreamStreamCall):
    pass


class LocalAioRpcError(grpc.aio.AioRpcError):
    """The `AioRpcError` of a call refused locally; `.cause` is the typed reason (see Rejection)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str]] = (),
                 cause: Exception | None = None) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details, None)
        self.cause = cause


def aio_error(code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str]] = (),
              cause: Exception | None = None) -> grpc.aio.AioRpcError:
    """The `AioRpcError` an asyncio caller gets for a call refused locally."""
    return LocalAioRpcError(code, details, trailing, cause)


_FAILED_CALLS: dict[CallKind, type[_FailedAioCall]] = {
    CallKind.UNARY_UNARY: _FailedUnaryUnaryCall,
    CallKind.UNARY_STREAM: _FailedUnaryStreamCall,
    CallKind.STREAM_UNARY: _FailedStreamUnaryCall,
    CallKind.STREAM_STREAM: _FailedStreamStreamCall,
}


def failed_aio_call(kind: CallKind, error: grpc.aio.AioRpcError) -> _FailedAioCall:
    """A finished call of `kind` that failed with `error`, as a grpc.aio interceptor returns it."""
    return _FAILED_CALLS[kind](error)
