"""HTTPS to Consul: the control plane reaches an agent serving its HTTP API over TLS, verified against a CA."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import LocalConsul, free_port
from controlplane.security.devcerts import LocalCA
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ControlPlaneProcess, ttl, wait_until


def test_the_control_plane_speaks_https_to_consul(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    issued = ca.issue("consul", hosts=("127.0.0.1", "localhost"))
    agent = LocalConsul(data_dir=tmp_path / "consul")
    agent.pick_ports()
    https = free_port()
    agent.extra_config = {"ports": {**agent._ports, "https": https}, "cert_file": str(issued.cert),
                          "key_file": str(issued.key), "ca_file": str(ca.cert_path), "verify_incoming": False}
    agent.start()
    plane = ControlPlaneProcess(f"https://127.0.0.1:{https}", extra_args=["--consul-ca", str(ca.cert_path)],
                                log_path=tmp_path / "cp.log")
    try:
        plane.start()
        with grpc.insecure_channel(plane.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            registry.Register(registry_pb2.RegisterRequest(service="https-app", address="127.0.0.1", port=7500,
                                                           check=ttl(30)), timeout=5)
            found = wait_until(lambda: registry.Discover(registry_pb2.DiscoverRequest(service="https-app"),
                                                         timeout=5).instances, what="the instance")
            assert [i.port for i in found] == [7500]
    finally:
        plane.kill()
        agent.destroy()


def test_an_untrusted_consul_certificate_is_refused(tmp_path: Path) -> None:
    """Without the CA, the handshake fails: the control plane never serves against an unverified Consul."""
    ca = LocalCA(tmp_path / "ca")
    issued = ca.issue("consul")
    agent = LocalConsul(data_dir=tmp_path / "consul")
    agent.pick_ports()
    https = free_port()
    agent.extra_config = {"ports": {**agent._ports, "https": https}, "cert_file": str(issued.cert),
                          "key_file": str(issued.key), "verify_incoming": False}
    agent.start()
    plane = ControlPlaneProcess(f"https://127.0.0.1:{https}", log_path=tmp_path / "cp.log")
    try:
        with pytest.raises(AssertionError, match="control plane"):
            plane.start(timeout=6)
        assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "cp.log").read_text()
    finally:
        plane.kill()
        agent.destroy()
