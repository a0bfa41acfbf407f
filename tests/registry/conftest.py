from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import grpc
import pytest
from controlplane.v1 import registry_pb2, registry_pb2_grpc

_names = itertools.count()


@pytest.fixture
def registry(channel: grpc.Channel) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(channel)


@pytest.fixture
def service_name(request: pytest.FixtureRequest) -> str:
    """A service name no other test uses, so tests sharing one Consul do not see each other."""
    return f"svc-{next(_names)}-{abs(hash(request.node.nodeid)) % 10**6}"


@pytest.fixture
def register(
    registry: registry_pb2_grpc.RegistryServiceStub,
) -> Iterator[Callable[..., registry_pb2.Instance]]:
    """Register an instance for the test; deregistered at the end."""
    created: list[str] = []

    def _register(**fields: object) -> registry_pb2.Instance:
        instance = registry.Register(registry_pb2.RegisterRequest(**fields), timeout=5).instance
        created.append(instance.instance_id)
        return instance

    yield _register
    for instance_id in created:
        with contextlib.suppress(grpc.RpcError):
            registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance_id), timeout=5)


def ttl(seconds: int = 30) -> registry_pb2.HealthCheck:
    check = registry_pb2.HealthCheck()
    check.ttl.ttl.FromSeconds(seconds)
    return check


def grpc_check(interval_ms: int = 1000) -> registry_pb2.HealthCheck:
    check = registry_pb2.HealthCheck()
    check.grpc.interval.FromMilliseconds(interval_ms)
    return check
