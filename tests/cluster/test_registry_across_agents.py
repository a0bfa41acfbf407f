"""Replicas on different Consul agents serve one registry: any replica heartbeats and deregisters any
instance, and an address and port hold one instance wherever it was registered."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import duration_pb2

from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.cluster.conftest import Replicas
from tests.helpers import wait_until


def stub(address: str) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(grpc.insecure_channel(address))


def register(on: registry_pb2_grpc.RegistryServiceStub, service: str, port: int,
             ttl_seconds: int = 2) -> registry_pb2.Instance:
    check = registry_pb2.HealthCheck(ttl=registry_pb2.TtlHealthCheck(ttl=duration_pb2.Duration(seconds=ttl_seconds)))
    request = registry_pb2.RegisterRequest(service=service, address="127.0.0.1", port=port, check=check)
    return on.Register(request, timeout=10).instance


def instances(on: registry_pb2_grpc.RegistryServiceStub, service: str) -> list[registry_pb2.Instance]:
    """The passing instances."""
    return list(on.Discover(registry_pb2.DiscoverRequest(service=service), timeout=5).instances)


def counts(on: registry_pb2_grpc.RegistryServiceStub, service: str) -> tuple[int, int]:
    """(instances, passing instances) of the service in the catalog, healthy or not."""
    listed = on.ListServices(registry_pb2.ListServicesRequest(), timeout=5).services
    found = [(s.instance_count, s.passing_count) for s in listed if s.name == service]
    return found[0] if found else (0, 0)


@pytest.fixture
def service() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def test_an_instance_registered_through_one_replica_is_heartbeaten_and_deregistered_through_the_other(
        replicas: Replicas, service: str) -> None:
    a, b = stub(replicas.a.address), stub(replicas.b.address)
    instance = register(a, service, 9301)

    heartbeats = 0

    def heartbeat() -> bool:  # its TTL is 2 s: heartbeats through b keep it passing well past that
        nonlocal heartbeats
        b.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=instance.instance_id, note="via b"), timeout=5)
        heartbeats += 1
        return heartbeats >= 6

    wait_until(heartbeat, 20, interval=0.5, what="six heartbeats through b")
    assert counts(a, service) == (1, 1)

    b.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5)
    wait_until(lambda: counts(a, service) == (0, 0), what="the instance gone for a")
    with pytest.raises(grpc.RpcError) as again:
        b.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=instance.instance_id), timeout=5)
    assert again.value.code() == grpc.StatusCode.NOT_FOUND


def test_registering_an_address_again_replaces_its_instance_on_whichever_agent_held_it(
        replicas: Replicas, service: str) -> None:
    a, b = stub(replicas.a.address), stub(replicas.b.address)
    first = register(a, service, 9302)
    again = [register(on, service, 9302) for on in (a, b, a, b, b)]  # five restarts, through either replica
    other = register(b, service, 9303)

    assert {i.instance_id for i in again} == {first.instance_id}  # the same instance, not a new one each time
    wait_until(lambda: counts(a, service) == (2, 2), what="one instance per address and port")
    assert sorted(i.port for i in instances(a, service)) == [9302, 9303]
    assert other.instance_id != first.instance_id
