"""`make up TLS=1`: every process of the demo with mTLS and the control plane enforcing the authorization
policy; the try-it commands it prints (grpcurl with the operator's certificate, the CLI from .run/tls/env)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, wait_until
from tests.stack import Stack, running_stack

GRPCURL = str(Path(sys.executable).parent / "grpcurl")


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("tls-stack"), extra_env={"TLS": "1"}) as running:
        yield running


def grpcurl(stack: Stack, flags: list[str], address: str, method: str, body: dict | None = None
            ) -> subprocess.CompletedProcess[str]:
    data = ["-d", json.dumps(body)] if body is not None else []
    return subprocess.run([GRPCURL, *flags, *data, address, method], capture_output=True, text=True, timeout=30,
                          cwd=ROOT)


def operator_flags(stack: Stack) -> list[str]:
    tls = stack.dir / "tls"
    return ["-cacert", str(tls / "ca.pem"), "-cert", str(tls / "operator-devstack.pem"),
            "-key", str(tls / "operator-devstack.key")]


def test_an_order_placed_over_mtls_is_confirmed(tls_stack: Stack) -> None:
    address = tls_stack.address("order")
    placed = grpcurl(tls_stack, operator_flags(tls_stack), address, "demo.order.v1.OrderService/CreateOrder",
                     {"user_id": "alice", "items": [{"sku": "apple", "quantity": 1, "unit_price_cents": 150}]})
    assert placed.returncode == 0, placed.stderr
    order = json.loads(placed.stdout)["order"]
    order_id = order.get("orderId") or order["order_id"]

    def confirmed() -> bool:
        got = grpcurl(tls_stack, operator_flags(tls_stack), address, "demo.order.v1.OrderService/GetOrder",
                      {"order_id": order_id})
        return '"ORDER_STATUS_CONFIRMED"' in got.stdout

    wait_until(confirmed, timeout=30, what="the order to be confirmed")


def test_plaintext_and_certificate_less_callers_are_refused(tls_stack: Stack) -> None:
    for flags in (["-plaintext"], ["-cacert", str(tls_stack.dir / "tls" / "ca.pem")]):
        done = grpcurl(tls_stack, flags, tls_stack.control_plane, "list")
        assert done.returncode != 0, done.stdout


def test_the_cli_works_from_the_env_file_and_services_may_not_write_config(tls_stack: Stack) -> None:
    env_file = tls_stack.dir / "tls" / "env"
    script = f". {env_file} && {sys.executable} -m controlplane --control-plane {tls_stack.control_plane} saga list"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={k: v for k, v in tls_stack.env.items() if not k.startswith("CONTROLPLANE_TLS")})
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\(\d+ sagas\)$", done.stdout, re.M), done.stdout
    tls = tls_stack.dir / "tls"
    as_order = ["-cacert", str(tls / "ca.pem"), "-cert", str(tls / "order.pem"), "-key", str(tls / "order.key")]
    denied = grpcurl(tls_stack, as_order, tls_stack.control_plane, "controlplane.v1.ConfigService/SetConfig",
                     {"service": "order", "content": {"x": 1}})
    assert "PermissionDenied" in denied.stderr or "PERMISSION_DENIED" in denied.stderr, denied.stderr


def test_the_readmes_tls_commands_run(tls_stack: Stack) -> None:
    """The README's block, with this stack's folder and ports in place of .run/ and the default ports."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme.split("## mTLS and authorization", 1)[1], re.S).group(1)  # type: ignore[union-attr]
    block = block.replace(".run/", f"{tls_stack.dir}/").replace("127.0.0.1:50062", tls_stack.address("order"))
    env = {**{k: v for k, v in tls_stack.env.items() if not k.startswith("CONTROLPLANE_TLS")},
           "CONTROLPLANE_ADDR": tls_stack.control_plane}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ORDER_STATUS_PENDING"' in done.stdout or '"order"' in done.stdout, done.stdout
    assert re.search(r"^\(\d+ sagas\)$", done.stdout, re.M), done.stdout
