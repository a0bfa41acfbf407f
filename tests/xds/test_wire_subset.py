"""The wire subset encodes exactly what Envoy's messages do: every field checked against xds-protos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.xds.v1 import envoy_wire_pb2

HERE = Path(__file__).resolve().parent
XDS_PROTOS = HERE.parents[1] / "tools" / "xds-protos" / "envoy"


def test_every_field_of_the_subset_matches_envoys() -> None:
    if not XDS_PROTOS.is_dir():
        pytest.fail("tools/xds-protos is missing: run `make deps` (scripts/fetch-xds-protos.sh)")
    result = subprocess.run([sys.executable, str(HERE / "check_wire_subset.py")], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_the_check_catches_a_wrong_field_number(tmp_path: Path) -> None:
    """The check above can fail: a copy of the subset with one field renumbered is reported."""
    proto = HERE.parents[1] / "protos" / "controlplane" / "xds" / "v1" / "envoy_wire.proto"
    broken = tmp_path / "envoy_wire.proto"
    broken.write_text(proto.read_text().replace("ApiListener api_listener = 19;", "ApiListener api_listener = 99;"))
    result = subprocess.run([sys.executable, str(HERE / "check_wire_subset.py"), str(broken)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert "Listener.api_listener (envoy.config.listener.v3.Listener): no field 99" in result.stdout, (
        result.stdout + result.stderr)
    assert envoy_wire_pb2.Listener.DESCRIPTOR.fields_by_name["api_listener"].number == 19
