"""Loopback test servers built from generic handlers (bytes in, bytes out), sync and asyncio.

`Behavior` says what the server does and records what it saw; tests change it while the server runs.
Every server listens on 127.0.0.1 with a port picked by the OS and is stopped when its block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from controlplane.interceptors import intercepted_aio_channel, intercepted_channel

SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"

WAIT = 10.0  # seconds: the longest any test waits for a condition before failing


class FakeClock:
    """A monotonic clock (seconds) that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Behavior:
    """What a test server does on each call, and what it saw."""

    def __init__(self) -> None:
        self.fail_with: grpc.StatusCode | None = None  # every call fails with this status
        self.fail_first: list[grpc.StatusCode] = []  # the next calls fail with these, one each
        self.gate: threading.Event | None = None  # calls wait here (at most WAIT seconds) when set
        self.on_call: Callable[[bytes, Any], Any] | None = None  # may return a response (or awaitable)
        self.calls = 0
        self.time_remaining: list[float | None] = []
        self._in_flight = 0
        self._changed = threading.Condition()

    # --- the handler logic, shared by the sync and the asyncio servers ---

    def _start(self, context: Any) -> grpc.StatusCode | None:
        with self._changed:
            self.calls += 1
            self._in_flight += 1
            self._changed.notify_all()
        self.time_remaining.append(context.time_remaining())
        if self.fail_first:
            return self.fail_first.pop(0)
        return self.fail_with

    def _end(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def wait_in_flight(self, count: int) -> None:
        """Block until `count` calls are inside the handler."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._in_flight >= count, WAIT), "calls never arrived"

    def _respond_sync(self, request: bytes, context: Any) -> bytes:
        code = self._start(context)
        try:
            if self.gate is not None:
                self.gate.wait(WAIT)
            if self.on_call is not None:
                result = self.on_call(request, context)
                if result is not None:
                    return result
            if code is not None:
                context.abort(code, f"told to fail with {code.name}")
            return request
        finally:
            self._end()

    async def _respond_aio(self, request: bytes, context: Any) -> bytes:
        code = self._start(context)
        try:
            if self.gate is not None:
                await asyncio.to_thread(self.gate.wait, WAIT)
            if self.on_call is not None:
                result = self.on_call(request, context)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    return result
            if code is not None:
                await context.abort(code, f"told to fail with {code.name}")
            return request
        finally:
            self._end()

    # --- generic handlers ---

    def sync_handler(self) -> grpc.GenericRpcHandler:
        def unary(request: bytes, context: Any) -> bytes:
            return self._respond_sync(request, context)

        def server_stream(request: bytes, context: Any) -> Iterator[bytes]:
            response = self._respond_sync(request, context)
            yield response
            yield response

        def client_stream(requests: Iterator[bytes], context: Any) -> bytes:
            return self._respond_sync(b"".join(requests), context)

        def bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
            for request in requests:
                yield self._respond_sync(request, context)

        return _generic(unary, server_stream, client_stream, bidi)

    def aio_handler(self) -> grpc.GenericRpcHandler:
        async def unary(request: bytes, context: Any) -> bytes:
            return await self._respond_aio(request, context)

        async def server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
            response = await self._respond_aio(request, context)
            yield response
            yield response

        async def client_stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
            return await self._respond_aio(b"".join([r async for r in requests]), context)

        async def bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
            async for request in requests:
                yield await self._respond_aio(request, context)

        return _generic(unary, server_stream, client_stream, bidi)


def _generic(unary: Any, server_stream: Any, client_stream: Any, bidi: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


@contextlib.contextmanager
def sync_server(behavior: Behavior, interceptors: Sequence[Any] = (), workers: int = 8) -> Iterator[str]:
    """A running sync server with `workers` handler threads; yields its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), interceptors=list(interceptors))
    server.add_generic_rpc_handlers((behavior.sync_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if behavior.gate is not None:
            behavior.gate.set()
        server.stop(None)


@contextlib.asynccontextmanager
async def aio_server(behavior: Behavior, interceptors: Sequence[Any] = ()) -> AsyncIterator[str]:
    """A running grpc.aio server; yields its address."""
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers((behavior.aio_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if behavior.gate is not None:
            behavior.gate.set()
        await server.stop(None)


@contextlib.contextmanager
def sync_served(
    behavior: Behavior, client: Sequence[Any] = (), server: Sequence[Any] = (), workers: int = 8
) -> Iterator[grpc.Channel]:
    """A running sync server and a channel to it through the `client` interceptors."""
    with sync_server(behavior, server, workers) as address, sync_channel(address, client) as channel:
        yield channel


@contextlib.asynccontextmanager
async def aio_served(
    behavior: Behavior, client: Sequence[Any] = (), server: Sequence[Any] = ()
) -> AsyncIterator[grpc.aio.Channel]:
    """A running grpc.aio server and a grpc.aio channel to it through the `client` interceptors (our stack's
    unary calls skip grpc.aio's interceptor layer, as in production: see test_intercepted_aio_channel)."""
    async with (
        aio_server(behavior, server) as address,
        intercepted_aio_channel(address, list(client)) as channel,
    ):
        yield channel


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most WAIT seconds) for a condition that another thread makes true, e.g. a stream's
    final status reaching the breaker: gRPC runs done-callbacks after waking the stream's reader."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.001)


async def aio_eventually(condition: Callable[[], bool], what: str) -> None:
    """`eventually` for asyncio: yields to the event loop while waiting."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.001)


def dead_address() -> str:
    """A loopback address where nothing listens (a port the OS just handed out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def sync_channel(address: str, interceptors: Sequence[Any] = (), options: Sequence[Any] = ()) -> grpc.Channel:
    """A channel through `interceptors` the way the library opens one (`intercepted_channel`: unary calls
    skip grpcio's interceptor layer); `test_intercepted_channel.py` holds it to `grpc.intercept_channel`."""
    return intercepted_channel(grpc.insecure_channel(address, options=list(options)), *interceptors)


def trailing(error_or_call: Any) -> dict[str, str]:
    return dict(error_or_call.trailing_metadata() or ())
