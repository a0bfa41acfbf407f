"""Run a real Consul agent on loopback, for tests and for `make up`.

The agent binds only to 127.0.0.1 on ports picked free at start, so several can run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConsulNotFound(RuntimeError):
    """No consul binary could be found."""


def find_consul_binary() -> str:
    """The consul binary to run: $CONSUL_BIN, the project's tools/bin/consul, or one on PATH."""
    candidates = [os.environ.get("CONSUL_BIN", ""), str(PROJECT_ROOT / "tools" / "bin" / "consul")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("consul")
    if on_path:
        return on_path
    raise ConsulNotFound(
        "no consul binary: run `make deps` (it provisions one into tools/bin), or put consul on PATH, or set CONSUL_BIN"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` (a loopback address) that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(host: str, count: int) -> list[int]:
    """`count` different TCP ports on `host` that were free a moment ago (bound together, so the kernel cannot
    hand out one twice, as calls of free_port one after another can)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def consul_reachable(http_addr: str, timeout: float = 1.0) -> bool:
    """True when a Consul agent at host:port answers and has a leader."""
    try:
        with urllib.request.urlopen(f"http://{http_addr}/v1/status/leader", timeout=timeout) as resp:
            return resp.status == 200 and json.loads(resp.read() or b'""') != ""
    except (OSError, ValueError):
        return False


@dataclass
class LocalConsul:
    """A Consul agent on loopback: by default a single-node server persisting to `data_dir`.

    `dev=True` keeps everything in memory. Otherwise the agent is a server (`server=True`) that waits for
    `bootstrap_expect` servers, or a client agent, and persists to `data_dir`, so it can be stopped and
    started again with its state (what `make up` and the stale-cache tests need). `retry_join` lists the
    Serf LAN addresses (`host:port`) of agents to join, for a cluster. Ports are picked free at the first
    start unless given, and kept across restarts (a server's Raft peers know it by its server port).
    """

    data_dir: Path | None = None
    dev: bool = False
    http_port: int = 0
    server_port: int = 0
    serf_lan_port: int = 0
    log_path: Path | None = None
    bind: str = "127.0.0.1"
    node: str = "controlplane-local"
    server: bool = True
    bootstrap_expect: int = 1
    retry_join: list[str] = field(default_factory=list)
    # Raft timing: 1 elects a new leader within about 3 s of the old one dying; Consul's default, 5, takes
    # 13-17 s and suits slow or shared machines (see docs/consul.md).
    raft_multiplier: int = 1
    binary: str = field(default_factory=find_consul_binary)
    # More agent configuration, merged into the generated file (ACLs, say).
    extra_config: dict[str, Any] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = None
    _ports: dict[str, int] = field(default_factory=dict)
    _own_tmp: bool = False

    @property
    def http_addr(self) -> str:
        return f"{self.bind}:{self.http_port}"

    @property
    def serf_addr(self) -> str:
        """Where other agents join this one (`retry_join`)."""
        return f"{self.bind}:{self.serf_lan_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> LocalConsul:
        """Start the agent; with `wait`, return once it answers and knows a leader."""
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="consul-"))
            self._own_tmp = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pick_ports()
        args = [
            self.binary,
            "agent",
            f"-bind={self.bind}",
            f"-client={self.bind}",
            f"-advertise={self.bind}",
            f"-node={self.node}",
            "-log-level=warn",
            f"-config-file={self._write_config()}",
            *(f"-retry-join={address}" for address in self.retry_join),
        ]
        if self.dev:
            args.append("-dev")
        elif self.server:
            args += ["-server", f"-bootstrap-expect={self.bootstrap_expect}", f"-data-dir={self.data_dir / 'data'}"]
        else:
            args += [f"-data-dir={self.data_dir / 'data'}"]
        # Run inside the data directory: a dev agent writes its local state relative to its cwd.
        log = open(self.log_path or self.data_dir / "consul.log", "ab")  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(
            args,
            cwd=self.data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if wait:
            self._wait_ready(timeout)
        return self

    def _write_config(self) -> Path:
        assert self.data_dir is not None
        path = self.data_dir / "agent.json"
        config = {
            "ports": self._ports,
            "disable_update_check": True,
            "enable_script_checks": False,
            "performance": {"raft_multiplier": self.raft_multiplier},
            **self.extra_config,
        }
        path.write_text(json.dumps(config))
        return path

    def pick_ports(self) -> None:
        """Choose the free ports not given (once: they stay the same across restarts, so clients keep the
        address and a server's Raft peers keep knowing it)."""
        if self._ports:
            return
        given = {self.http_port, self.server_port, self.serf_lan_port} - {0}
        picked = iter(port for port in free_ports(self.bind, 6) if port not in given)
        self.http_port = self.http_port or next(picked)
        self.server_port = self.server_port or next(picked)
        self.serf_lan_port = self.serf_lan_port or next(picked)
        self._ports = {
            "http": self.http_port,
            "server": self.server_port,
            "serf_lan": self.serf_lan_port,
            "serf_wan": -1,
            "dns": -1,
            "grpc": -1,
        }

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the agent answers and knows a leader (a cluster's agents: once it elected one)."""
        self._wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL the agent, as a crash would; its data stays for a later start()."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"consul exited with {self._process.returncode}; see {self.data_dir}")
            if consul_reachable(self.http_addr, timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"consul at {self.http_addr} not ready within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the agent (SIGTERM, then SIGKILL). Its data stays for a later start()."""
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def destroy(self) -> None:
        """Stop the agent and remove a data directory it created itself."""
        self.stop()
        if self._own_tmp and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def version(self) -> str:
        out = subprocess.run([self.binary, "version"], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()[0]
