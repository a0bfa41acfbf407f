"""A lean client for Consul's /v1/txn: the event store's hot path, one request per group commit.

The general Consul client (py-consul on aiohttp) spends several hundred microseconds of CPU per request
on machinery a transaction does not need (sessions, cookies, timeouts objects, signals); at hundreds
of transactions per second that is a good part of the orchestrator's CPU. This client keeps a few
HTTP/1.1 keep-alive connections to the agent and speaks just enough HTTP for one PUT: a fixed request
head, and a response with Content-Length or chunked encoding; the ACL token and TLS of the control plane's
other Consul clients. Failures are translated, and requests reported to the metrics, as `run_txn` does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Sequence

from controlplane.consul.client import report_request
from controlplane.errors import ConsulAccessDenied, ConsulUnavailable
from controlplane.saga.eventstore.txn import Op, TxnRejected, TxnResult, txn_label, txn_result, writes_anything

MAX_IDLE = 8  # keep-alive connections kept for reuse


class _Closed(ConnectionError):
    pass


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._answer()

    def eof_received(self) -> bool:
        self._eof = True
        self._answer()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or _Closed("Consul closed the connection"))

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        """Write one request; the future of (status, body, whether the server closes the connection)."""
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def abort(self, error: Exception) -> None:
        self._fail(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _answer(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = _parse_response(self._buffer, self._eof)
        except ValueError as exc:
            self.abort(exc)
            return
        if parsed is None:
            return
        status, body, close, consumed = parsed
        del self._buffer[:consumed]
        self._waiter = None
        waiter.set_result((status, body, close))


def _parse_response(buffer: bytearray, eof: bool) -> tuple[int, bytes, bool, int] | None:
    """(status, body, connection closes, bytes consumed) of a complete response at the start of
    `buffer`, or None while it is incomplete. ValueError when it is not HTTP."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if eof:
            raise ValueError("Consul closed the connection in the middle of an answer")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(status_line[1])
    length: int | None = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    start = end + 4
    if chunked:
        found = _dechunk(buffer, start)
        if found is None:
            if eof:
                raise ValueError("Consul closed the connection in the middle of an answer")
            return None
        body, consumed = found
    elif length is not None:
        if len(buffer) < start + length:
            if eof:
                raise ValueError("Consul closed the connection in the middle of an answer")
            return None
        body, consumed = bytes(buffer[start:start + length]), start + length
    else:  # the body ends with the connection
        if not eof:
            return None
        body, consumed, close = bytes(buffer[start:]), len(buffer), True
    return status, body, close, consumed


def _dechunk(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    """The body of a chunked response starting at `at` and the offset after it, or None if incomplete."""
    parts = []
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";", 1)[0], 16)
        at = line_end + 2
        if size == 0:
            while True:  # trailer fields, then an empty line
                line_end = buffer.find(b"\r\n", at)
                if line_end < 0:
                    return None
                if line_end == at:
                    return b"".join(parts), line_end + 2
                at = line_end + 2
        if len(buffer) < at + size + 2:
            return None
        parts.append(bytes(buffer[at:at + size]))
        at += size + 2


class TxnClient:
    """Runs Consul transactions over keep-alive connections to `host:port`; `timeout` in seconds per request.

    Build it with `ConsulAccess.txn_client()`, which gives it the ACL token and the TLS context (HTTPS).
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0, token: str = "",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._host, self._port = host, port
        self._timeout = timeout
        self._ssl = ssl_context
        token_header = f"X-Consul-Token: {token}\r\n" if token else ""
        self._head = (f"PUT /v1/txn HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                      f"{token_header}").encode()
        self._idle: list[_Connection] = []

    async def run(self, ops: Sequence[Op]) -> TxnResult:
        """Run one transaction, like `txn.run_txn`: ConsulUnavailable when Consul cannot answer (the
        transaction may or may not have been applied), TxnRejected when it refuses the request itself.
        Reported to the Consul request observer (metrics) as `run_txn`'s are."""
        started = time.perf_counter()
        what = txn_label(writes_anything(ops))
        outcome = "unavailable"
        try:
            result = await self._run(ops, what)
            outcome = "ok" if result.ok else "conflict"
            return result
        except (TxnRejected, ConsulAccessDenied):
            outcome = "refused"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            report_request(what, outcome, time.perf_counter() - started)

    async def _run(self, ops: Sequence[Op], what: str) -> TxnResult:
        body = json.dumps(list(ops)).encode()
        request = b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(body), body)
        loop = asyncio.get_running_loop()
        connection = await self._connection()
        timer = loop.call_later(self._timeout, connection.abort, TimeoutError(f"no answer in {self._timeout:g}s"))
        try:
            status, answer, close = await connection.send(request)
        except (OSError, ValueError) as exc:  # ConnectionError and TimeoutError are OSErrors
            connection.close()
            raise ConsulUnavailable(f"Consul is unreachable ({what}): {type(exc).__name__} {exc}") from exc
        except BaseException:  # cancelled mid-request: the connection's state is unknown
            connection.close()
            raise
        finally:
            timer.cancel()
        if close or len(self._idle) >= MAX_IDLE:
            connection.close()
        else:
            self._idle.append(connection)
        return txn_result(status, answer)

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        try:
            _, connection = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(_Connection, self._host, self._port, ssl=self._ssl),
                self._timeout
            )
        except (OSError, TimeoutError) as exc:
            raise ConsulUnavailable(f"Consul is unreachable (transaction): {type(exc).__name__} {exc}") from exc
        return connection

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
