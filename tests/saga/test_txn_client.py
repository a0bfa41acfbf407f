"""The lean /v1/txn client of the event store: against a real Consul, and against odd HTTP answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from controlplane.consul.access import split_address
from controlplane.consul.client import observe_requests
from controlplane.consul.local_agent import LocalConsul, free_port
from controlplane.errors import ConsulUnavailable
from controlplane.saga.eventstore.txn import TxnRejected, cas_op, get_op, set_op
from controlplane.saga.eventstore.txn_client import TxnClient

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def test_a_transaction_commits_and_answers_one_result_per_operation(consul: LocalConsul) -> None:
    host, port = split_address(consul.http_addr)
    key = f"test-txn/{uuid.uuid4().hex}"

    async def scenario() -> tuple[bool, list[str], object]:
        client = TxnClient(host, port)
        try:
            written = await client.run([set_op(f"{key}/a", {"n": 1}), cas_op(f"{key}/b", [1, 2], 0)])
            read = await client.run([get_op(f"{key}/a")])  # the same kept-alive connection
            return written.ok, [r["Key"] for r in written.results], read.results[0]["Value"]
        finally:
            await client.close()

    ok, keys, value = run(scenario)

    assert (ok, keys) == (True, [f"{key}/a", f"{key}/b"])
    assert value == "eyJuIjoxfQ=="  # {"n":1}


def test_a_refused_transaction_names_the_operation_that_failed(consul: LocalConsul) -> None:
    host, port = split_address(consul.http_addr)
    key = f"test-txn/{uuid.uuid4().hex}"

    async def scenario() -> tuple[bool, list[int]]:
        client = TxnClient(host, port)
        try:
            await client.run([set_op(key, 1)])
            answer = await client.run([set_op(f"{key}-other", 2), cas_op(key, 3, 0)])  # key exists: cas fails
            return answer.ok, [e.op_index for e in answer.errors]
        finally:
            await client.close()

    assert run(scenario) == (False, [1])


def test_every_transaction_is_reported_to_the_consul_request_observer(consul: LocalConsul) -> None:
    """The group commit's transactions go through this client, not `consul_call`: without this report the
    control plane's busiest Consul writes would be missing from its request metrics."""
    host, port = split_address(consul.http_addr)
    key = f"test-txn/{uuid.uuid4().hex}"
    seen: list[tuple[str, str]] = []

    async def scenario() -> None:
        client = TxnClient(host, port)
        try:
            await client.run([set_op(key, 1)])
            await client.run([cas_op(key, 2, 0)])  # key exists: the compare-and-set fails
            await client.run([get_op(key)])
        finally:
            await client.close()

    def observe(what: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        seen.append((what, outcome))

    observe_requests(observe)
    try:
        run(scenario)
    finally:
        observe_requests(None)

    assert seen == [("write transaction", "ok"), ("write transaction", "conflict"), ("read transaction", "ok")]


async def serve(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                ) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    return await reader.readexactly(length)


def test_a_chunked_answer_arriving_in_pieces_is_read_whole_and_the_connection_reused() -> None:
    body = b'{"Results":[{"KV":{"Key":"k","ModifyIndex":7}}]}'
    connections = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while not reader.at_eof():
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            for piece in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"%x\r\n" % 10, body[:10],
                          b"\r\n%x\r\n%s\r\n" % (len(body) - 10, body[10:]), b"0\r\n\r\n"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)

    async def scenario() -> tuple[list[int], int]:
        server, port = await serve(answer)
        client = TxnClient("127.0.0.1", port)
        try:
            results = [await client.run([set_op("k", 1)]) for _ in range(2)]
            return [r.results[0]["ModifyIndex"] for r in results], len(connections)
        finally:
            await client.close()
            server.close()

    assert run(scenario) == ([7, 7], 1)


def test_an_agent_that_does_not_answer_is_unavailable_after_the_timeout() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def scenario() -> None:
        server, port = await serve(answer)
        client = TxnClient("127.0.0.1", port, timeout=0.2)
        try:
            await client.run([set_op("k", 1)])
        finally:
            await client.close()
            server.close()

    with pytest.raises(ConsulUnavailable, match="TimeoutError"):
        run(scenario)


def test_an_unreachable_agent_is_unavailable() -> None:
    async def scenario() -> None:
        await TxnClient("127.0.0.1", free_port(), timeout=1).run([set_op("k", 1)])

    with pytest.raises(ConsulUnavailable, match="unreachable"):
        run(scenario)


def test_a_connection_the_agent_closes_is_not_used_again_and_errors_are_translated() -> None:
    answers = iter([
        b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"Results\":[]}",
        b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\n\r\ntoo large",
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\nno leader",
    ])
    connections = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(next(answers))
            await writer.drain()

    async def scenario() -> list[str]:
        server, port = await serve(answer)
        client = TxnClient("127.0.0.1", port)
        outcomes = []
        try:
            for _ in range(3):
                try:
                    outcomes.append(str((await client.run([set_op("k", 1)])).ok))
                except (TxnRejected, ConsulUnavailable) as exc:
                    outcomes.append(type(exc).__name__)
            return outcomes
        finally:
            await client.close()
            server.close()

    assert run(scenario) == ["True", "TxnRejected", "ConsulUnavailable"]
    assert len(connections) == 2  # the first answer closed its connection


def test_an_answer_that_is_not_http_is_unavailable() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async def scenario() -> None:
        server, port = await serve(answer)
        client = TxnClient("127.0.0.1", port, timeout=2)
        try:
            await client.run([set_op("k", 1)])
        finally:
            await client.close()
            server.close()

    with pytest.raises(ConsulUnavailable, match="not an HTTP answer"):
        run(scenario)
