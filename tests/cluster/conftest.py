"""A three-server Consul cluster with two control-plane replicas, each on its own client agent."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    cluster = ConsulCluster(tmp_path_factory.mktemp("cluster")).start()
    prefix = f"test-cluster-{uuid.uuid4().hex[:8]}/"
    logs = tmp_path_factory.mktemp("cluster-logs")
    planes = [ControlPlaneProcess(agent.http_addr, log_path=logs / f"replica-{name}.log",
                                  extra_args=saga_args(prefix, f"replica-{name}"))
              for agent, name in zip(cluster.agents, "ab", strict=True)]
    try:
        for plane in planes:
            plane.start(timeout=60)
        yield Replicas(cluster, planes[0], planes[1], prefix)
    finally:
        for plane in planes:
            plane.kill()
        cluster.stop()
