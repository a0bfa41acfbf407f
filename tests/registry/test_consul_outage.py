"""With Consul stopped, reads serve the last known set marked stale, writes are UNAVAILABLE,
the health service says NOT_SERVING; all of it recovers by itself when Consul is back."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.consul.local_agent import LocalConsul
from controlplane.server import SERVICE_NAMES
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ControlPlaneProcess, ttl, wait_until
from tests.registry.test_watch import WatchReader

E = registry_pb2


@pytest.fixture
def own_consul(tmp_path):
    agent = LocalConsul(data_dir=tmp_path / "consul").start()
    yield agent
    agent.destroy()


@pytest.fixture
def plane(own_consul, tmp_path):
    process = ControlPlaneProcess(own_consul.http_addr, log_path=tmp_path / "cp.log").start()
    yield process
    process.kill()


def health_of(channel: grpc.Channel, service: str) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


def test_reads_serve_stale_data_and_writes_fail_while_consul_is_down_then_recover(own_consul, plane):
    with grpc.insecure_channel(plane.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        registry.Register(
            E.RegisterRequest(service="stale", instance_id="stale-1", address="127.0.0.1", port=9700, check=ttl(300)),
            timeout=5,
        )
        discover = E.DiscoverRequest(service="stale")
        assert [i.instance_id for i in wait_until(lambda: registry.Discover(discover, timeout=5).instances)] == [
            "stale-1"
        ]
        reader = WatchReader(registry.Watch(E.WatchRequest(service="stale"), timeout=120))
        assert not reader.next().stale

        own_consul.stop()

        stale = wait_until(lambda: (r := registry.Discover(discover, timeout=5)).stale and r, what="stale Discover")
        assert [i.instance_id for i in stale.instances] == ["stale-1"]
        notice = reader.next_of(E.WATCH_EVENT_TYPE_STALENESS_CHANGED)
        assert notice.stale and [i.instance_id for i in notice.instances] == ["stale-1"]
        with pytest.raises(grpc.RpcError) as failure:
            registry.Register(E.RegisterRequest(service="stale", address="127.0.0.1", port=9701), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Consul" in failure.value.details()
        for name in ("", *SERVICE_NAMES):
            wait_until(
                lambda n=name: health_of(channel, n) == health_pb2.HealthCheckResponse.NOT_SERVING,
                what=f"{name or 'server'} NOT_SERVING",
            )

        own_consul.start()

        wait_until(lambda: not registry.Discover(discover, timeout=5).stale, timeout=20, what="fresh Discover")
        assert not reader.next_of(E.WATCH_EVENT_TYPE_STALENESS_CHANGED, timeout=20).stale
        wait_until(lambda: health_of(channel, "") == health_pb2.HealthCheckResponse.SERVING, what="SERVING")
        registry.Register(
            E.RegisterRequest(service="stale", instance_id="stale-2", address="127.0.0.1", port=9701, check=ttl(300)),
            timeout=10,
        )
        added = reader.next_of(E.WATCH_EVENT_TYPE_ADDED, timeout=20)
        assert added.instance.instance_id == "stale-2"
        reader.close()
