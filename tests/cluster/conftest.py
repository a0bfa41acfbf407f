"""A three-server Consul cluster with two control-plane replicas, each on its own client agent."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.consul_cluster import ConsulCluster
from tests.helpers import ControlPlaneProcess
from tests.saga.test_crash_recovery import saga_args


@dataclass
class Replicas:
    cluster: ConsulCluster
    a: ControlPlaneProcess  # on cluster.agents[0]
    b: ControlPlaneProcess  # on cluster.agents[1]
    prefix: str

    @property
    def addresses(self) -> str:
        return f"{self.a.address},{self.b.address}"


@contextlib.contextmanager
def running_replicas(factory: pytest.TempPathFactory, *, raft_multiplier: int = 1,
                     production_timings: bool = False) -> Iterator[Replicas]:
    """The cluster and two replicas. `production_timings`: the saga's liveness TTL and the blocking wait
    as `controlplane serve` defaults them (else the fast test timings of saga_args)."""
    cluster = ConsulCluster(factory.mktemp("cluster"), raft_multiplier=raft_multiplier).start()
    prefix = f"test-cluster-{uuid.uuid4().hex[:8]}/"
    logs = factory.mktemp("cluster-logs")

    def args(name: str) -> list[str]:
        if production_timings:
            return ["--saga-kv-prefix", prefix, "--saga-replica-id", f"replica-{name}", "--blocking-wait", "30"]
        return saga_args(prefix, f"replica-{name}")

    planes = [ControlPlaneProcess(agent.http_addr, log_path=logs / f"replica-{name}.log", extra_args=args(name))
              for agent, name in zip(cluster.agents, "ab", strict=True)]
    try:
        for plane in planes:
            plane.start(timeout=60)
        yield Replicas(cluster, planes[0], planes[1], prefix)
    finally:
        for plane in planes:
            plane.kill()
        cluster.stop()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with running_replicas(tmp_path_factory) as running:
        yield running
