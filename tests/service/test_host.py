"""The service host: a team's own server registered, healthy, traced, following its config, stopped cleanly.

Real control plane and Consul. The SIGTERM test runs a host in a child process, as a team's service would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.service import AioServiceHost, HostSettings, ServiceHost
from controlplane.v1 import config_pb2_grpc, registry_pb2
from tests.config.conftest import set_config
from tests.helpers import ROOT, wait_until
from tests.interceptors.servers import SERVICE, UNARY, Behavior


def passing(registry, service: str) -> list[registry_pb2.Instance]:
    return list(registry.Discover(registry_pb2.DiscoverRequest(service=service), timeout=5).instances)


def health_of(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_a_sync_host_registers_serves_and_deregisters_when_stopped(control_plane, registry, service_name):
    host = ServiceHost(HostSettings(service_name, control_plane=control_plane.address, version="1.2.3",
                                    shutdown_grace=1))
    host.server.add_generic_rpc_handlers((Behavior().sync_handler(),))
    port = host.start(SERVICE)
    try:
        wait_until(lambda: passing(registry, service_name), what="the instance to pass its gRPC check")
        (instance,) = passing(registry, service_name)
        assert (instance.port, instance.version) == (port, "1.2.3")
        assert health_of(port, SERVICE) == health_pb2.HealthCheckResponse.SERVING
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            _, call = channel.unary_unary(UNARY).with_call(
                b"x", timeout=5, metadata=(("traceparent", f"00-{trace_id}-b7ad6b7169203331-01"),))
            assert dict(call.trailing_metadata()).get("x-trace-id") == trace_id  # the host's interceptors ran
    finally:
        host.stop()
    assert passing(registry, service_name) == []


def check_output(consul, service: str) -> str:
    """The TTL check's output as the agent has it (the catalog takes output-only changes up lazily)."""
    with urllib.request.urlopen(f"http://{consul.http_addr}/v1/agent/checks", timeout=5) as reply:
        checks = json.load(reply)
    return " ".join(check["Output"] for check in checks.values() if check["ServiceName"] == service)


def test_a_ttl_checked_host_keeps_passing_on_its_heartbeats(control_plane, registry, service_name, consul):
    ttl = 2.0
    host = ServiceHost(HostSettings(service_name, control_plane=control_plane.address, check="ttl", ttl=ttl))
    host.start()
    try:
        wait_until(lambda: passing(registry, service_name), what="the first heartbeat")
        (instance,) = passing(registry, service_name)
        first = time.monotonic()
        seen = {check_output(consul, service_name)}
        # Heartbeats every ttl/3: wait for new ones until more than a whole TTL has gone by since the first.
        wait_until(lambda: (seen.add(check_output(consul, service_name)) or len(seen) >= 4)
                   and time.monotonic() - first > ttl, timeout=15, what="heartbeats over more than one TTL")
        assert [i.instance_id for i in passing(registry, service_name)] == [instance.instance_id]
    finally:
        host.stop()


def test_the_host_follows_the_client_policy_in_its_config(control_plane, channel, service_name):
    host = ServiceHost(HostSettings(service_name, control_plane=control_plane.address))
    host.start()
    try:
        document = {"client_policy": {"deadlines": {"default_timeout": 2.5}}}
        set_config(config_pb2_grpc.ConfigServiceStub(channel), service_name, document)

        def applied() -> bool:
            deadlines = host.live_policy.policy.deadlines
            return deadlines is not None and deadlines.default_timeout == 2.5

        wait_until(applied, what="the policy to apply")
    finally:
        host.stop()


def test_an_asyncio_host_serves_and_stops(control_plane, registry, service_name):
    async def scenario() -> int:
        host = AioServiceHost(HostSettings(service_name, control_plane=control_plane.address, shutdown_grace=1))
        host.server.add_generic_rpc_handlers((Behavior().aio_handler(),))
        port = await host.start(SERVICE)
        try:
            await asyncio.to_thread(wait_until, lambda: passing(registry, service_name), what="registration")
            async with host.channel_to(f"127.0.0.1:{port}") as channel:
                assert await channel.unary_unary(UNARY)(b"y", timeout=5) == b"y"
        finally:
            await host.stop()
        return port

    asyncio.run(scenario())
    assert passing(registry, service_name) == []


HOSTED = textwrap.dedent("""
    import sys
    from controlplane.interceptors import setup_tracing
    from controlplane.service import HostSettings, ServiceHost
    from tests.interceptors.servers import SERVICE, Behavior
    setup_tracing("hosted")
    host = ServiceHost(HostSettings(sys.argv[1], control_plane=sys.argv[2], shutdown_grace=1))
    host.server.add_generic_rpc_handlers((Behavior().sync_handler(),))
    port = host.start(SERVICE)
    print(port, flush=True)
    import signal, threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    host.stop()
    print("stopped", flush=True)
""")


def test_sigterm_stops_a_hosted_service_deregistered_with_its_spans_flushed(control_plane, registry, service_name,
                                                                           tmp_path: Path):
    env = {**os.environ, "CONTROLPLANE_TRACE_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "jsonl"}
    child = subprocess.Popen([sys.executable, "-c", HOSTED, service_name, control_plane.address], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        wait_until(lambda: passing(registry, service_name), what="registration")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            channel.unary_unary(UNARY)(b"x", timeout=5)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
        assert "stopped" in child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert passing(registry, service_name) == []
    spans = [json.loads(line) for line in (tmp_path / "hosted.jsonl").read_text().splitlines()]
    assert [s["name"] for s in spans if s["kind"] == "SpanKind.SERVER"] == [UNARY]


def test_settings_refuse_what_consul_would(control_plane, service_name):
    host = ServiceHost(HostSettings(service_name, control_plane=control_plane.address, deregister_critical_after=5))
    with pytest.raises(ValueError, match="deregister_critical_after"):
        host.start()
    host.stop()
