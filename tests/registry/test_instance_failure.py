"""A killed instance leaves Discover and Watch once Consul's gRPC check fails."""

from __future__ import annotations

import signal
import subprocess
import sys

import grpc

from controlplane.consul.local_agent import free_port
from controlplane.v1 import registry_pb2
from tests.helpers import ROOT, wait_until
from tests.registry.test_watch import WatchReader


def start_demo_service(name: str, control_plane: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"services.{name}",
            "--listen",
            f"127.0.0.1:{port}",
            "--control-plane",
            control_plane,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


def test_sigkilled_instance_is_removed_from_discover_and_watch(registry, control_plane):
    process, port = start_demo_service("inventory", control_plane.address)
    try:

        def mine() -> list[registry_pb2.Instance]:
            found = registry.Discover(registry_pb2.DiscoverRequest(service="inventory"), timeout=5).instances
            return [i for i in found if i.port == port]

        (instance,) = wait_until(mine, timeout=20, what="the service to register and pass")
        reader = WatchReader(registry.Watch(registry_pb2.WatchRequest(service="inventory"), timeout=60))
        assert instance.instance_id in [i.instance_id for i in reader.next().instances]

        process.send_signal(signal.SIGKILL)
        process.wait(5)

        wait_until(lambda: not mine(), timeout=10, what="Discover to drop the killed instance")
        removed = reader.next_of(registry_pb2.WATCH_EVENT_TYPE_REMOVED, timeout=10)
        assert removed.instance.instance_id == instance.instance_id
        reader.close()
        registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_sigterm_deregisters_the_instance(registry, control_plane):
    process, port = start_demo_service("payment", control_plane.address)

    def mine() -> list[registry_pb2.Instance]:
        found = registry.Discover(registry_pb2.DiscoverRequest(service="payment"), timeout=5).instances
        return [i for i in found if i.port == port]

    (instance,) = wait_until(mine, timeout=20, what="the service to register")
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    try:
        registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5)
        raise AssertionError("the instance was still registered after SIGTERM")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
