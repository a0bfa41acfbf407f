"""The demo stack as `make up` starts it (scripts/devstack.py), on free ports and in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.consul.local_agent import free_ports
from tests.helpers import ROOT


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    control_plane: str  # the first replica's address
    ports: dict[str, int]
    consul: str  # the agent's HTTP address
    replicas: list[str] = field(default_factory=list)  # every replica's address

    @property
    def control_planes(self) -> str:
        """Every replica, as clients are given them."""
        return ",".join(self.replicas or [self.control_plane])

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
def running_stack(folder: Path, replicas: int = 1, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """`devstack up` in `folder` on free ports, with `replicas` control-plane replicas; `devstack down` at
    the end (asserting both worked)."""
    free = iter(free_ports("127.0.0.1", 4 + replicas + 12))  # all different (see free_ports)
    ports = {name: next(free) for name in ("user", "order", "payment", "inventory")}
    replica_ports = [next(free) for _ in range(replicas)]
    consul_port = next(free)
    env = {
        **os.environ,
        "DEVSTACK_DIR": str(folder),
        "REPLICAS": str(replicas),
        "DEVSTACK_CONTROL_PLANE_PORT": str(replica_ports[0]),
        "DEVSTACK_CONTROL_PLANE_PORTS": ",".join(map(str, replica_ports)),
        "DEVSTACK_CONSUL_PORT": str(consul_port),
        "DEVSTACK_CONSUL_SERVER_PORTS": f"{next(free)},{next(free)}",
        "DEVSTACK_DEMO_PORTS": ",".join(str(ports[n]) for n in ("user", "order", "payment", "inventory")),
        "DEVSTACK_METRICS_PORTS": ",".join(str(next(free)) for _ in range(4)),
        "DEVSTACK_DEMO_METRICS_PORTS": ",".join(str(next(free)) for _ in range(4)),
        "DEVSTACK_PROMETHEUS_PORT": str(next(free)),
        "OTEL_TRACES_EXPORTER": "jsonl",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # flush spans within 0.1 s, so a test can read a trace at once
        "CONTROLPLANE_TRACE_DIR": str(folder / "traces"),
    }
    env.update(extra_env or {})
    env.pop("CONSUL_HTTP_ADDR", None)
    running = Stack(folder, env, f"127.0.0.1:{replica_ports[0]}", ports, f"127.0.0.1:{consul_port}",
                    [f"127.0.0.1:{port}" for port in replica_ports])
    up = running.devstack("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield running
    finally:
        down = running.devstack("down")
        assert down.returncode == 0, down.stdout + down.stderr
