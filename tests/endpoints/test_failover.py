"""One channel to several control-plane replicas: round robin, gRPC retries of idempotent calls, quick
reconnects. Against real replicas on one Consul agent, killed with SIGKILL."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from controlplane import endpoints
from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ControlPlaneProcess, wait_until


def test_targets_for_one_or_several_addresses() -> None:
    assert endpoints.target("127.0.0.1:50051") == "ipv4:127.0.0.1:50051"
    assert endpoints.target(" 127.0.0.1:1, 127.0.0.2:2 ,") == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert endpoints.target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert endpoints.target("localhost:7") == "dns:///localhost:7"  # every address the name has
    assert endpoints.target("dns:///cp.internal:50051") == "dns:///cp.internal:50051"
    assert endpoints.target("[::1]:5,[::1]:6") == "ipv6:[::1]:5,[::1]:6"
    for bad in ("", " , ", "127.0.0.1", "127.0.0.1:http"):
        with pytest.raises(ValueError):
            endpoints.target(bad)


@pytest.fixture
def replicas(consul: LocalConsul) -> Iterator[list[ControlPlaneProcess]]:
    started = [ControlPlaneProcess(consul.http_addr).start() for _ in range(2)]
    yield started
    for replica in started:
        replica.kill()


def test_calls_keep_succeeding_through_a_replica_kill_and_use_it_again_after_its_restart(
    replicas: list[ControlPlaneProcess],
) -> None:
    with endpoints.channel(",".join(r.address for r in replicas)) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)

        def list_services() -> None:
            stub.ListServices(registry_pb2.ListServicesRequest(), timeout=5)

        for _ in range(20):
            list_services()
        replicas[0].kill()
        failures = 0
        for _ in range(200):  # in flight on the killed replica or not: every call answers
            try:
                list_services()
            except grpc.RpcError:
                failures += 1
        assert failures == 0

        replicas[0].start()  # the same port again
        replicas[1].kill()

        def answers() -> bool:
            try:
                list_services()
                return True
            except grpc.RpcError:
                return False

        wait_until(answers, 5.0, what="the restarted replica to take calls")
        assert all(answers() for _ in range(50))  # the other one is down: the first takes every call
