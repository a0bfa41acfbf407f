"""Config test fixtures: a ConfigService stub, a fresh service name per test, and small request helpers."""

from __future__ import annotations

import itertools
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import pytest

from controlplane.config.wire import from_struct, to_struct
from controlplane.v1 import config_pb2, config_pb2_grpc

_names = itertools.count()


@pytest.fixture
def config(channel: grpc.Channel) -> config_pb2_grpc.ConfigServiceStub:
    return config_pb2_grpc.ConfigServiceStub(channel)


@pytest.fixture
def service() -> str:
    """A service name no other test uses, so tests sharing one Consul do not see each other."""
    return f"cfg-{next(_names)}-{uuid.uuid4().hex[:8]}"


def set_config(
    stub: config_pb2_grpc.ConfigServiceStub,
    service: str,
    content: Mapping[str, Any],
    *,
    environment: str = "",
    expected: int = 0,
    author: str = "tests",
    message: str = "",
) -> config_pb2.ConfigDocument:
    request = config_pb2.SetConfigRequest(
        service=service,
        environment=environment,
        content=to_struct(content),
        expected_version=expected,
        author=author,
        message=message,
    )
    return stub.SetConfig(request, timeout=10).document


def get_config(
    stub: config_pb2_grpc.ConfigServiceStub, service: str, environment: str = "", resolve_secrets: bool = False
) -> config_pb2.GetConfigResponse:
    request = config_pb2.GetConfigRequest(service=service, environment=environment, resolve_secrets=resolve_secrets)
    return stub.GetConfig(request, timeout=10)


def content_of(document: config_pb2.ConfigDocument) -> dict[str, Any]:
    return from_struct(document.content)


def set_schema(
    stub: config_pb2_grpc.ConfigServiceStub, service: str, schema: Mapping[str, Any], expected: int = 0
) -> int:
    request = config_pb2.SetSchemaRequest(service=service, schema=to_struct(schema), expected_version=expected)
    return stub.SetSchema(request, timeout=10).version


class StreamReader:
    """Reads a server stream on a thread so a test can wait for each message with a timeout."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self._queue.put(message)
            self._queue.put(StopIteration())
        except grpc.RpcError as error:
            self._queue.put(error)

    def next(self, timeout: float = 10.0) -> Any:
        """The next message; raises the stream's error, or AssertionError after `timeout` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stream message within {timeout}s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def nothing_within(self, seconds: float) -> bool:
        try:
            self._queue.get(timeout=seconds)
            return False
        except queue.Empty:
            return True

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(5)


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` on threads released at the same instant; each one's result, or its gRPC status code."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]()
        except grpc.RpcError as error:
            outcomes[i] = error.code()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes
