"""Shared fixtures: a real Consul agent for the whole session and a control plane in front of it."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import ConsulNotFound, LocalConsul
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ControlPlaneProcess, HealthServer

_names = itertools.count()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI timeout, `timeout`, `kill`) ends the run as Ctrl-C does: fixtures are torn down, so every
    Consul agent, control plane and demo process the tests started is stopped (Python's default for SIGTERM is to
    exit at once, leaving them running)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)

# Spans of the processes the tests start (control planes, demo services) go to a folder of their own,
# not into the working tree's .traces/.
os.environ.setdefault("CONTROLPLANE_TRACE_DIR", tempfile.mkdtemp(prefix="controlplane-test-traces-"))


@pytest.fixture(scope="session")
def consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsul]:
    """A single-node Consul server on free loopback ports, stopped at the end of the session."""
    try:
        agent = LocalConsul(data_dir=tmp_path_factory.mktemp("consul"))
    except ConsulNotFound as exc:  # never skip silently: these tests need the real thing
        pytest.exit(f"Consul is required for the tests: {exc}", returncode=3)
    agent.start()
    yield agent
    agent.destroy()


@pytest.fixture(scope="session")
def control_plane(consul: LocalConsul, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    """`controlplane serve` against the session's Consul."""
    log = Path(tmp_path_factory.mktemp("controlplane")) / "controlplane.log"
    process = ControlPlaneProcess(consul.http_addr, log_path=log).start()
    yield process
    process.kill()


@pytest.fixture
def channel(control_plane: ControlPlaneProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(control_plane.address) as ch:
        yield ch


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.stop()


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
