"""The control plane against a Consul with ACLs on and default deny: with a token of policies/consul-acl.hcl
everything works; with a token that may only read, or none, writes answer FAILED_PRECONDITION naming the
ACL token, and nothing is written."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.config.wire import to_struct
from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import config_pb2, config_pb2_grpc, registry_pb2, registry_pb2_grpc, saga_pb2, saga_pb2_grpc
from tests.helpers import ROOT, ControlPlaneProcess, ttl, wait_until

MASTER = "6c1e7e4e-0000-4000-8000-000000000001"
READ_ONLY = "\n".join((  # what the shipped policy grants, with reads in place of the KV and service writes
    'key_prefix "controlplane/" { policy = "read" }', 'service_prefix "" { policy = "read" }',
    'node_prefix "" { policy = "read" }', 'session_prefix "" { policy = "write" }',
    'agent_prefix "" { policy = "read" }',
))


class AclConsul:
    def __init__(self, agent: LocalConsul) -> None:
        self.agent = agent

    def api(self, method: str, path: str, body: Any = None, token: str = MASTER) -> Any:
        request = urllib.request.Request(f"http://{self.agent.http_addr}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"X-Consul-Token": token})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"null")

    def token(self, name: str, rules: str) -> str:
        self.api("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
        return str(self.api("PUT", "/v1/acl/token", {"Description": name, "Policies": [{"Name": name}]})["SecretID"])


@pytest.fixture(scope="module")
def acl_consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclConsul]:
    agent = LocalConsul(data_dir=tmp_path_factory.mktemp("acl-consul"), extra_config={
        "primary_datacenter": "dc1",
        "acl": {"enabled": True, "default_policy": "deny", "down_policy": "extend-cache",
                "tokens": {"master": MASTER, "agent": MASTER}},
    }).start()
    yield AclConsul(agent)
    agent.destroy()


def start_plane(consul: AclConsul, tmp_path: Path, *args: str) -> ControlPlaneProcess:
    return ControlPlaneProcess(consul.agent.http_addr, extra_args=list(args), log_path=tmp_path / "cp.log")


def test_with_the_shipped_policy_registry_config_and_sagas_work(acl_consul: AclConsul, tmp_path: Path) -> None:
    token = acl_consul.token("controlplane", (ROOT / "policies" / "consul-acl.hcl").read_text())
    plane = start_plane(acl_consul, tmp_path, "--consul-token", token).start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            instance = registry.Register(registry_pb2.RegisterRequest(
                service="acl-app", address="127.0.0.1", port=7300, check=ttl(30)), timeout=5).instance
            registry.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=instance.instance_id), timeout=5)
            found = wait_until(lambda: registry.Discover(registry_pb2.DiscoverRequest(service="acl-app"),
                                                         timeout=5).instances, what="the instance")
            assert [i.instance_id for i in found] == [instance.instance_id]
            registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5)
            config = config_pb2_grpc.ConfigServiceStub(channel)
            config.SetConfig(config_pb2.SetConfigRequest(service="acl-app", content=to_struct({"a": 1})), timeout=5)
            got = config.GetConfig(config_pb2.GetConfigRequest(service="acl-app"), timeout=5)
            assert dict(got.document.content) == {"a": 1.0}
            sagas = saga_pb2_grpc.SagaServiceStub(channel)
            definition = saga_pb2.SagaDefinition(name="acl-saga", steps=[saga_pb2.SagaStep(
                name="one", target_service="acl-app", action="/demo.payment.v1.PaymentService/Charge")])
            stored = sagas.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition), timeout=5)
            assert stored.definition.version == 1
            started = sagas.StartSaga(saga_pb2.StartSagaRequest(definition_name="acl-saga"), timeout=5)
            assert started.saga.saga_id  # its first event is in Consul: the transaction was allowed
    finally:
        plane.kill()


@pytest.mark.parametrize("case", ["read-only token", "no token"])
def test_without_write_permission_writes_answer_a_clear_error(case: str, acl_consul: AclConsul,
                                                              tmp_path: Path) -> None:
    args = ["--consul-token", acl_consul.token("read-only", READ_ONLY)] if case == "read-only token" else []
    plane = start_plane(acl_consul, tmp_path, *args)
    try:
        plane_started = _start_without_waiting(plane)
        with grpc.insecure_channel(plane_started.address) as channel:
            config = config_pb2_grpc.ConfigServiceStub(channel)
            write = config_pb2.SetConfigRequest(service=f"acl-denied-{len(args)}", content=to_struct({"a": 1}))

            def refused() -> grpc.RpcError | None:
                try:
                    config.SetConfig(write, timeout=5)
                except grpc.RpcError as error:
                    return error if error.code() != grpc.StatusCode.UNAVAILABLE else None
                raise AssertionError("the write was accepted")

            error = wait_until(refused, timeout=20, what="the control plane to answer")
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
            assert "ACL token" in error.details() and "policies/consul-acl.hcl" in error.details()
        with pytest.raises(urllib.error.HTTPError) as missing:
            acl_consul.api("GET", f"/v1/kv/controlplane/config/acl-denied-{len(args)}?recurse")
        assert missing.value.code == 404  # nothing was written
    finally:
        plane.kill()


def _start_without_waiting(plane: ControlPlaneProcess) -> ControlPlaneProcess:
    """Start the process; it cannot report SERVING (its Consul probe is refused), so do not wait for that."""
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "controlplane", "serve", "--listen", plane.address, "--consul", plane.consul_addr,
            "--consul-probe-interval", "0.1", "--metrics-listen", "", *plane.extra_args]
    log = open(plane.log_path, "ab") if plane.log_path else subprocess.DEVNULL  # noqa: SIM115
    plane.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return plane
