"""Generated code is committed; regenerating it from protos/ must reproduce gen/ exactly."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_gen_matches_what_the_protos_generate(tmp_path):
    done = subprocess.run(
        ["bash", "scripts/gen-proto.sh", str(tmp_path / "gen"), "--compare", "gen"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_packages_import_by_their_proto_package_names():
    from controlplane.v1 import config_pb2, registry_pb2_grpc, saga_pb2
    from demo.inventory.v1 import inventory_pb2_grpc
    from demo.order.v1 import order_pb2

    assert registry_pb2_grpc.RegistryServiceStub
    assert config_pb2.DESCRIPTOR.package == saga_pb2.DESCRIPTOR.package == "controlplane.v1"
    assert order_pb2.DESCRIPTOR.package == "demo.order.v1"
    assert inventory_pb2_grpc.InventoryServiceServicer
