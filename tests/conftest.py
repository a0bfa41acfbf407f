"""Shared fixtures: a real Consul agent for the whole session and a control plane in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import ConsulNotFound, LocalConsul
from tests.helpers import ControlPlaneProcess, HealthServer


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
