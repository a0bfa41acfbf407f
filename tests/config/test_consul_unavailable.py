"""With Consul gone, config calls answer UNAVAILABLE (never UNKNOWN) and open watches keep their last document."""

from __future__ import annotations

import grpc
import pytest

from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import config_pb2, config_pb2_grpc
from tests.config.conftest import StreamReader, content_of, get_config, set_config
from tests.helpers import ControlPlaneProcess, wait_until


@pytest.fixture
def own_consul(tmp_path):
    agent = LocalConsul(data_dir=tmp_path / "consul").start()
    yield agent
    agent.destroy()


def test_calls_are_unavailable_while_consul_is_down_and_watches_resume_after(own_consul, tmp_path, service):
    plane = ControlPlaneProcess(own_consul.http_addr, log_path=tmp_path / "cp.log").start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            stub = config_pb2_grpc.ConfigServiceStub(channel)
            set_config(stub, service, {"a": 1})
            reader = StreamReader(stub.WatchConfig(config_pb2.WatchConfigRequest(service=service), timeout=60))
            assert content_of(reader.next().document) == {"a": 1}

            own_consul.stop()
            for call in (
                lambda: get_config(stub, service),
                lambda: set_config(stub, service, {"a": 2}, expected=1),
                lambda: stub.ListVersions(config_pb2.ListVersionsRequest(service=service), timeout=10),
            ):
                with pytest.raises(grpc.RpcError) as failure:
                    call()
                assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "Consul" in failure.value.details()
            assert reader.nothing_within(0.3)  # the stream stays open, nothing new to say

            own_consul.start()
            wait_until(lambda: _answers(stub, service), timeout=20, what="Consul back")
            set_config(stub, service, {"a": 3}, expected=1)
            assert content_of(reader.next(timeout=20).document) == {"a": 3}
            reader.close()
    finally:
        plane.kill()


def _answers(stub: config_pb2_grpc.ConfigServiceStub, service: str) -> bool:
    try:
        get_config(stub, service)
        return True
    except grpc.RpcError:
        return False
