"""ConfigClient: fetches, caches, calls back on change, evaluates flags locally, survives control-plane restarts."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from controlplane.config.client import AsyncConfigClient, ConfigClient, ConfigSnapshot
from controlplane.v1 import config_pb2_grpc
from controlplane.watch import Backoff
from tests.config.conftest import set_config
from tests.helpers import ControlPlaneProcess, wait_until

FAST = Backoff(initial=0.05, maximum=0.5)


@pytest.fixture
def own_plane(consul, tmp_path):
    """A control plane of the test's own, so the test can stop and restart it."""
    process = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log").start()
    yield process
    process.kill()


def test_client_serves_the_current_document_and_calls_back_on_each_change(control_plane, config, service):
    set_config(config, service, {"db": {"pool": 5}})
    seen: list[ConfigSnapshot] = []
    changed = threading.Event()
    with ConfigClient(service, "prod", control_plane.address, backoff=FAST) as client:
        assert client.get("db.pool") == 5 and client.version == 1 and client.connected
        assert client.get("db.missing", "fallback") == "fallback"
        client.on_change(lambda snapshot: (seen.append(snapshot), changed.set()))
        set_config(config, service, {"db": {"pool": 50}}, environment="prod", author="ops")
        assert client.wait_for_version(2)
        assert changed.wait(5)
        assert client.config == {"db": {"pool": 50}}
        assert [(s.version, s.author, dict(s.layer_versions)) for s in seen] == [(2, "ops", {"": 1, "prod": 2})]


def test_a_failing_callback_does_not_stop_updates(control_plane, config, service):
    set_config(config, service, {"n": 1})
    with ConfigClient(service, "", control_plane.address, backoff=FAST) as client:
        client.on_change(lambda snapshot: 1 / 0)
        set_config(config, service, {"n": 2}, expected=1)
        assert client.wait_for_version(2)
        set_config(config, service, {"n": 3}, expected=2)
        assert client.wait_for_version(3) and client.get("n") == 3


def test_client_start_refuses_an_invalid_service_name(control_plane):
    with pytest.raises(grpc.RpcError) as failure:
        ConfigClient("Bad Name", control_plane=control_plane.address).start(timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_keeps_the_last_good_config_while_the_control_plane_restarts(own_plane, service):
    with grpc.insecure_channel(own_plane.address) as channel:
        set_config(config_pb2_grpc.ConfigServiceStub(channel), service, {"pool": 5})
    client = ConfigClient(service, "prod", own_plane.address, backoff=FAST).start()
    try:
        assert client.get("pool") == 5
        assert own_plane.terminate() == 0
        wait_until(lambda: not client.connected, what="client to notice the control plane left")
        assert client.get("pool") == 5 and client.version == 1  # still serving the last good version

        own_plane.start()  # same port
        with grpc.insecure_channel(own_plane.address) as channel:
            set_config(config_pb2_grpc.ConfigServiceStub(channel), service, {"pool": 7}, expected=1)
        assert client.wait_for_version(2, timeout=15)
        assert client.get("pool") == 7 and client.connected
    finally:
        client.stop()


def test_async_client_follows_changes_and_survives_a_control_plane_crash(own_plane, service):
    async def scenario() -> None:
        with grpc.insecure_channel(own_plane.address) as channel:
            set_config(config_pb2_grpc.ConfigServiceStub(channel), service, {"flags": {"beta": True}})
        async with AsyncConfigClient(service, "", own_plane.address, backoff=FAST) as client:
            assert client.flag_enabled("beta") and client.version == 1
            own_plane.kill()
            await asyncio.wait_for(_until(lambda: not client.connected), 10)
            assert client.flag_enabled("beta")  # the last good document, while the control plane is gone
            await asyncio.to_thread(own_plane.start)
            with grpc.insecure_channel(own_plane.address) as channel:
                set_config(config_pb2_grpc.ConfigServiceStub(channel), service, {"flags": {"beta": False}}, expected=1)
            assert await client.wait_for_version(2, timeout=15)
            assert not client.flag_enabled("beta")

    asyncio.run(scenario())


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.02)


def test_start_gives_up_after_its_timeout_when_no_control_plane_answers():
    from controlplane.consul.local_agent import free_port

    with pytest.raises(TimeoutError):
        ConfigClient("nobody", control_plane=f"127.0.0.1:{free_port()}", backoff=FAST).start(timeout=0.5)
