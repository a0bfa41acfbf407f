from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from services.common.database import Database


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[grpc.Server], None]], grpc.Channel]]:
    """Start a real loopback server with what `add` puts on it; returns a channel to it."""
    started: list[tuple[grpc.Server, grpc.Channel]] = []

    def _serve(add: Callable[[grpc.Server], None]) -> grpc.Channel:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        add(server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        started.append((server, channel))
        return channel

    yield _serve
    for server, channel in started:
        channel.close()
        server.stop(0).wait()


@pytest.fixture
def database(tmp_path) -> Callable[[str], Database]:
    def _db(schema: str) -> Database:
        return Database(tmp_path / "service.sqlite3", schema)

    return _db
