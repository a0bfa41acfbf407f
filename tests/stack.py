"""The demo stack as `make up` starts it (scripts/devstack.py), on free ports and in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from controlplane.consul.local_agent import free_port
from tests.helpers import ROOT


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    control_plane: str
    ports: dict[str, int]
    consul: str  # the agent's HTTP address

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def devstack(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "scripts/devstack.py", command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controlplane", "--control-plane", self.control_plane, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def pids(self) -> list[int]:
        return [int(p.read_text()) for p in (self.dir / "pids").glob("*.pid")]


@contextlib.contextmanager
def running_stack(folder: Path) -> Iterator[Stack]:
    """`devstack up` in `folder` on free ports; `devstack down` at the end (asserting both worked)."""
    ports = {name: free_port() for name in ("user", "order", "payment", "inventory")}
    control_plane_port = free_port()
    consul_port = free_port()
    env = {
        **os.environ,
        "DEVSTACK_DIR": str(folder),
        "DEVSTACK_CONTROL_PLANE_PORT": str(control_plane_port),
        "DEVSTACK_CONSUL_PORT": str(consul_port),
        "DEVSTACK_DEMO_PORTS": ",".join(str(ports[n]) for n in ("user", "order", "payment", "inventory")),
        "OTEL_TRACES_EXPORTER": "jsonl",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # flush spans within 0.1 s, so a test can read a trace at once
        "CONTROLPLANE_TRACE_DIR": str(folder / "traces"),
    }
    env.pop("CONSUL_HTTP_ADDR", None)
    running = Stack(folder, env, f"127.0.0.1:{control_plane_port}", ports, f"127.0.0.1:{consul_port}")
    up = running.devstack("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield running
    finally:
        down = running.devstack("down")
        assert down.returncode == 0, down.stdout + down.stderr
