"""A local CA, certificates per identity, and a control plane serving mTLS against the session's Consul."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.client import ClientTLS
from controlplane.security.devcerts import LocalCA, spiffe_id
from tests.helpers import ControlPlaneProcess


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("ca"))


def client_tls(ca: LocalCA, kind: str, name: str) -> ClientTLS:
    issued = ca.issue(f"{kind}-{name}", [spiffe_id(kind, name)])
    return ClientTLS(str(ca.cert_path), str(issued.cert), str(issued.key))


@pytest.fixture(scope="session")
def mtls_plane(consul: object, ca: LocalCA, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ControlPlaneProcess]:
    """`controlplane serve` with mTLS (health checked over TLS with an operator's certificate)."""
    server = ca.issue("controlplane", [spiffe_id("service", "controlplane")])
    log = Path(tmp_path_factory.mktemp("mtls")) / "cp.log"
    process = ControlPlaneProcess(
        consul.http_addr,  # type: ignore[attr-defined]
        extra_args=["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.cert_path)],
        log_path=log, tls=client_tls(ca, "operator", "tests"),
    ).start()
    yield process
    process.kill()
