"""Streams cannot take the slots every other call needs: in all they hold at most --max-streams (three
quarters of --max-concurrent-rpcs), one caller at most --max-streams-per-caller (half of that), whatever
the method and however many connections it opens. A real control plane, real Consul."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.client import connect
from controlplane.consul.local_agent import LocalConsul
from controlplane.stream_budget import stream_budget
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ControlPlaneProcess, operator_tokens, ttl

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
def plane(consul: LocalConsul, tmp_path: Path) -> Iterator[tuple[ControlPlaneProcess, dict[str, str]]]:
    """Eight calls at once, so by default six streams in all and three per caller; the callers' tokens."""
    policy = tmp_path / "authz.yaml"
    tokens = operator_tokens(policy, "flooder", "other")
    process = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log", extra_args=[
        "--max-concurrent-rpcs", "8", "--authz-policy", str(policy)]).start()
    yield process, tokens
    process.kill()


class Streams:
    """Watch streams, each on a connection of its own, held open until the test ends."""

    def __init__(self, plane: ControlPlaneProcess, tokens: dict[str, str], service: str) -> None:
        self._plane = plane
        self._tokens = tokens
        self._service = service
        self._open: list[tuple[grpc.Channel, Any]] = []

    def watch(self, who: str) -> grpc.StatusCode:
        """Open one more Watch stream as `who`; OK once its first message came, else the refusal's code."""
        channel = connect(self._plane.address, token=self._tokens[who]).channel()
        call = registry_pb2_grpc.RegistryServiceStub(channel).Watch(
            registry_pb2.WatchRequest(service=self._service), timeout=60)
        self._open.append((channel, call))
        try:
            next(call)
        except grpc.RpcError as refused:
            return refused.code()
        return grpc.StatusCode.OK

    def close_first(self) -> None:
        channel, call = self._open.pop(0)
        call.cancel()
        channel.close()

    def close(self) -> None:
        while self._open:
            self.close_first()


def test_one_caller_holds_at_most_its_share_of_streams_and_streams_leave_room_for_unary_calls(
    plane: tuple[ControlPlaneProcess, dict[str, str]],
) -> None:
    process, tokens = plane
    service = f"budget-{uuid.uuid4().hex[:6]}"
    with connect(process.address, token=tokens["other"]).channel() as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        registry.Register(registry_pb2.RegisterRequest(service=service, address="127.0.0.1", port=8080,
                                                       check=ttl(30)), timeout=10)
        streams = Streams(process, tokens, service)
        try:
            flooder = [streams.watch("flooder") for _ in range(4)]  # four connections, one caller
            other = [streams.watch("other") for _ in range(4)]
            # Six streams are open, the most there may be: unary calls still find their two slots.
            found = registry.Discover(registry_pb2.DiscoverRequest(service=service), timeout=10).instances
            streams.close_first()  # one of the flooder's: it may open one again
            again = streams.watch("flooder")
        finally:
            streams.close()

    assert flooder == [grpc.StatusCode.OK] * 3 + [EXHAUSTED]
    assert other == [grpc.StatusCode.OK] * 3 + [EXHAUSTED]
    assert [i.service for i in found] == [service]
    assert again == grpc.StatusCode.OK


def test_streams_of_every_method_count_and_the_refusal_names_the_limit(consul: LocalConsul, tmp_path: Path) -> None:
    process = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log", extra_args=[
        "--max-streams", "3", "--max-streams-per-caller", "2"]).start()
    channels = [grpc.insecure_channel(process.address) for _ in range(3)]
    try:
        # grpc.health.v1 Watch: a stream no servicer of ours counts per connection.
        calls = [health_pb2_grpc.HealthStub(c).Watch(health_pb2.HealthCheckRequest(), timeout=30) for c in channels]
        first = [next(call).status for call in calls[:2]]
        with pytest.raises(grpc.RpcError) as refused:
            next(calls[2])
        for call in calls:
            call.cancel()
    finally:
        for channel in channels:
            channel.close()
        process.kill()

    assert first == [health_pb2.HealthCheckResponse.SERVING] * 2
    assert refused.value.code() == EXHAUSTED
    assert "--max-streams-per-caller" in refused.value.details()


def test_the_default_budget_is_three_quarters_of_the_calls_and_half_of_that_per_caller() -> None:
    budgets = [stream_budget(*given) for given in ((10_000,), (8,), (1,), (8, 100), (8, 0, 100))]
    assert [(b.total, b.per_caller) for b in budgets] == [(7_500, 3_750), (6, 3), (1, 1), (8, 4), (6, 6)]
