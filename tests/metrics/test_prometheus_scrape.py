"""A real Prometheus server (Debian's package, from `make deps`) scrapes a control plane's metrics."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest

from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import ROOT, ControlPlaneProcess, free_port, wait_until

PROMETHEUS = Path(os.environ.get("PROMETHEUS_BIN") or ROOT / "tools" / "bin" / "prometheus")


def query(address: str, expression: str) -> list[dict]:
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)["data"]["result"]
    except OSError:
        return []


def test_prometheus_scrapes_the_control_planes_rpc_counts(consul, tmp_path: Path) -> None:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run `make deps` (scripts/install-prometheus.sh)")
    metrics_port, prometheus_port = free_port(), free_port()
    plane = ControlPlaneProcess(consul.http_addr, extra_args=["--metrics-listen", f"127.0.0.1:{metrics_port}"],
                                log_path=tmp_path / "cp.log").start()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cp\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    server = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
    address = f"127.0.0.1:{prometheus_port}"
    try:
        with grpc.insecure_channel(plane.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            for _ in range(5):
                stub.Discover(registry_pb2.DiscoverRequest(service="scraped"), timeout=5)
        expression = 'grpc_server_handled_total{grpc_method="Discover",grpc_code="OK"}'
        result = wait_until(lambda: [r for r in query(address, expression) if r["value"][1] == "5"], timeout=30,
                            interval=0.5, what="Prometheus to scrape 5 Discover calls")
        assert result[0]["metric"]["job"] == "cp" and result[0]["metric"]["grpc_service"] == \
            "controlplane.v1.RegistryService"
        up = query(address, "up")
        assert [r["value"][1] for r in up] == ["1"]
    finally:
        server.terminate()
        server.wait(30)
        plane.kill()
