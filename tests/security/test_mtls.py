"""mTLS on the control plane: the handshake accepted with a certificate of the CA, refused otherwise; every
client of it (connect(), ConfigClient, SelfRegistration, the CLI, stock xDS clients) speaks it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from controlplane.client import ClientTLS, connect
from controlplane.config.client import ConfigClient
from controlplane.registry.client import SelfRegistration
from controlplane.security.devcerts import LocalCA, spiffe_id
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from controlplane.xds.bootstrap import bootstrap_json
from tests.helpers import ControlPlaneProcess
from tests.security.conftest import client_tls

DISCOVER = registry_pb2.DiscoverRequest(service="mtls-probe")


def discover(tls: ClientTLS | None, address: str) -> registry_pb2.DiscoverResponse:
    connection = connect(address, credentials=tls)
    with connection.channel() as channel:
        return registry_pb2_grpc.RegistryServiceStub(channel).Discover(DISCOVER, timeout=5)


def test_a_client_certificate_of_the_ca_is_accepted(mtls_plane: ControlPlaneProcess, ca: LocalCA) -> None:
    assert list(discover(client_tls(ca, "service", "order"), mtls_plane.address).instances) == []


@pytest.mark.parametrize("case", ["no certificate", "another CA's certificate", "plaintext", "untrusted server"])
def test_the_handshake_is_refused(case: str, mtls_plane: ControlPlaneProcess, ca: LocalCA, tmp_path: Path) -> None:
    other = LocalCA(tmp_path / "other")
    stranger = other.issue("stranger", [spiffe_id("service", "order")])
    tls = {
        "no certificate": ClientTLS(str(ca.cert_path)),
        "another CA's certificate": ClientTLS(str(ca.cert_path), str(stranger.cert), str(stranger.key)),
        "plaintext": None,
        "untrusted server": ClientTLS(str(other.cert_path), str(stranger.cert), str(stranger.key)),
    }[case]
    with pytest.raises(grpc.RpcError) as refused:
        discover(tls, mtls_plane.address)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_config_client_and_self_registration_use_the_connection(mtls_plane: ControlPlaneProcess,
                                                                ca: LocalCA) -> None:
    connection = connect(mtls_plane.address, credentials=client_tls(ca, "service", "mtls-app"))
    config = ConfigClient("mtls-app", "", connection).start(timeout=10)
    try:
        assert config.connected
    finally:
        config.stop()
    registration = SelfRegistration(control_plane=connection, service="mtls-app", address="127.0.0.1", port=1,
                                    check="ttl", ttl=30)
    instance = registration.register()
    try:
        assert instance.service == "mtls-app"
    finally:
        registration.deregister()


def test_the_cli_reads_its_tls_files_from_the_environment(mtls_plane: ControlPlaneProcess, ca: LocalCA) -> None:
    tls = client_tls(ca, "operator", "cli")
    env = {**os.environ, "CONTROLPLANE_TLS_CA": str(tls.ca), "CONTROLPLANE_TLS_CERT": str(tls.cert),
           "CONTROLPLANE_TLS_KEY": str(tls.key)}
    done = subprocess.run([sys.executable, "-m", "controlplane", "--control-plane", mtls_plane.address, "status"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"control plane {mtls_plane.address}:")
    plain = subprocess.run([sys.executable, "-m", "controlplane", "--control-plane", mtls_plane.address, "status"],
                           env={k: v for k, v in env.items() if not k.startswith("CONTROLPLANE_TLS")},
                           capture_output=True, text=True, timeout=30)
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr


def test_a_stock_xds_client_speaks_mtls_to_the_ads_stream(mtls_plane: ControlPlaneProcess, ca: LocalCA) -> None:
    """The ADS stream is on the same port, so it has the same credentials; the bootstrap names the files."""
    tls = client_tls(ca, "service", "xds-client")
    bootstrap = json.loads(bootstrap_json(mtls_plane.address, "mtls-node", tls=tls))
    assert bootstrap["xds_servers"][0]["channel_creds"][0]["type"] == "tls"
    script = (
        "import grpc, sys\n"
        "ch = grpc.insecure_channel('xds:///mtls-nothing')\n"
        "try:\n"
        "    ch.unary_unary('/x.Y/Z')(b'', timeout=20, wait_for_ready=False)\n"
        "except grpc.RpcError as e:\n"
        "    print(e.code().name, e.details())\n"
    )
    env = {"PATH": os.environ["PATH"], "GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(bootstrap)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # Resolution worked over mTLS: the service has no instances, so the call fails for want of endpoints, not
    # for want of a control plane (which would be UNAVAILABLE naming the xDS server after 15 s).
    assert done.stdout.startswith("UNAVAILABLE"), done.stdout + done.stderr
    assert "EDS resource mtls-nothing: contains no localities" in done.stdout, done.stdout
