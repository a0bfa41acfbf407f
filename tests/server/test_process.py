"""The `controlplane serve` process: reflection, health, and a clean SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.server import SERVICE_NAMES
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ROOT, ControlPlaneProcess, wait_until
from tests.registry.test_watch import WatchReader

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(*args: str) -> str:
    done = subprocess.run([str(GRPCURL), "-plaintext", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_grpcurl_lists_every_service_through_reflection(control_plane):
    listed = grpcurl(control_plane.address, "list").split()
    assert set(listed) == {
        *SERVICE_NAMES,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_grpcurl_describes_and_calls_the_registry(control_plane):
    described = grpcurl(control_plane.address, "describe", "controlplane.v1.RegistryService")
    for rpc in ("Register", "Deregister", "Heartbeat", "Discover", "Watch", "ListServices"):
        assert f"rpc {rpc} (" in described
    answer = grpcurl(
        "-d", '{"service": "grpcurl-demo"}', control_plane.address, "controlplane.v1.RegistryService/Discover"
    )
    assert '"synced_at"' in answer


def test_health_reports_serving_for_the_server_and_each_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", *SERVICE_NAMES):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == (
            health_pb2.HealthCheckResponse.SERVING
        )


def test_sigterm_ends_open_watch_streams_and_exits_zero(consul, tmp_path):
    plane = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log").start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            reader = WatchReader(registry.Watch(registry_pb2.WatchRequest(service="sigterm"), timeout=60))
            reader.next()
            assert plane.terminate(timeout=15) == 0
            reader.thread.join(10)
            assert not reader.thread.is_alive(), "the watch stream did not end"
            with pytest.raises(grpc.RpcError) as failure:
                registry.ListServices(registry_pb2.ListServicesRequest(), timeout=2)
            assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        plane.kill()


def test_serve_documents_its_flags_and_environment_variables():
    done = subprocess.run(
        [sys.executable, "-m", "controlplane", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0
    for flag in ("--listen", "--consul", "CONSUL_HTTP_ADDR", "CONTROLPLANE_LISTEN"):
        assert flag in done.stdout


def test_past_max_concurrent_rpcs_a_call_is_resource_exhausted_until_one_ends(consul, tmp_path):
    plane = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log",
                                # streams may take every slot here: what is tested is gRPC's own cap
                                extra_args=["--max-concurrent-rpcs", "3", "--max-streams", "3",
                                            "--max-streams-per-caller", "3"]).start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            readers = [WatchReader(registry.Watch(registry_pb2.WatchRequest(service=f"limit-{n}"), timeout=60))
                       for n in range(3)]
            for reader in readers:
                reader.next()  # each stream is being served
            with pytest.raises(grpc.RpcError) as refused:
                registry.ListServices(registry_pb2.ListServicesRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            readers[0].call.cancel()
            answer = wait_until(lambda: _answered(registry), timeout=10, what="a call once a stream has ended")
            assert answer is not None
    finally:
        plane.kill()


def _answered(registry: registry_pb2_grpc.RegistryServiceStub) -> registry_pb2.ListServicesResponse | None:
    try:
        return registry.ListServices(registry_pb2.ListServicesRequest(), timeout=5)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # the server is still counting the ended stream
        return None
