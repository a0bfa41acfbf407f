"""The demo with `DEMO_DISCOVERY=xds`: its services dial each other over xds:///, and the README's stock
clients (grpcio and Node, no project import) place orders through the control plane's xDS server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT
from tests.stack import Stack, running_stack

NODE_MODULES = ROOT / "tools" / "node-xds" / "node_modules"


@pytest.fixture(scope="module")
def xds_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("xds-stack"), extra_env={"DEMO_DISCOVERY": "xds"}) as running:
        yield running


def bootstrap(stack: Stack, node_id: str) -> str:
    done = stack.cli("xds", "bootstrap", "--node-id", node_id)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_example(stack: Stack, command: list[str], node_id: str) -> str:
    env = {"PATH": os.environ["PATH"], "GRPC_XDS_BOOTSTRAP_CONFIG": bootstrap(stack, node_id),
           "NODE_PATH": str(NODE_MODULES)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_stock_python_client_places_an_order_through_xds(xds_stack: Stack) -> None:
    out = run_example(xds_stack, [sys.executable, "examples/xds/place_order.py", "alice", "apple", "1"],
                      "python-shopper")
    assert re.search(r"^order \S+: ORDER_STATUS_CONFIRMED \(saga \S+\)$", out, re.M), out


def test_the_stock_node_client_places_an_order_through_xds(xds_stack: Stack) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (make deps checks for it)"
    out = run_example(xds_stack, [node, "examples/xds/place_order.js", "bob", "pear", "1"], "node-shopper")
    assert re.search(r"^order \S+: ORDER_STATUS_CONFIRMED \(saga \S+\)$", out, re.M), out


def test_demo_services_dial_each_other_over_xds(xds_stack: Stack) -> None:
    """The order service checked the user through xds:///user: its stream is in the control plane's status."""
    test_the_stock_python_client_places_an_order_through_xds(xds_stack)
    status = xds_stack.cli("xds", "status")
    assert status.returncode == 0, status.stderr
    order_node = re.search(r"^  order-127\.0\.0\.1-\d+ .*$", status.stdout, re.M)
    assert order_node, status.stdout
    assert re.search(r"Listener\s+user\s+version \w+ \(up to date\)", status.stdout), status.stdout


def test_the_readmes_xds_commands_run_as_written(xds_stack: Stack) -> None:
    """The README's block, line for line, with CONTROLPLANE_ADDR pointing the CLI at this stack."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Stock gRPC clients through xDS", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    env = {**xds_stack.env, "CONTROLPLANE_ADDR": xds_stack.control_plane}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(re.findall(r"^order \S+: ORDER_STATUS_CONFIRMED", done.stdout, re.M)) == 2, done.stdout
    assert "ADS streams" in done.stdout
    config = xds_stack.cli("config", "get", "order")
    assert '"timeout_seconds": 5' in config.stdout, config.stdout
