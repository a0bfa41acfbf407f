"""Test helpers: bounded waits, control-plane processes, callers with identities, and small gRPC servers with
health."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from controlplane import paging
from controlplane.consul.local_agent import free_port
from controlplane.security.identity import token_digest
from controlplane.v1 import registry_pb2

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def running(pid: int) -> bool:
    """True while `pid` is a live process (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class ControlPlaneProcess:
    """`controlplane serve` as a child process on a free loopback port, with fast test timings."""

    consul_addr: str
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tls: Any = None  # a ClientTLS to health-check a control plane serving mTLS

    def channel(self) -> grpc.Channel:
        """A channel to this control plane (over TLS when it serves TLS)."""
        if self.tls is not None:
            return grpc.secure_channel(self.address, self.tls.credentials())
        return grpc.insecure_channel(self.address)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ControlPlaneProcess:
        args = [
            sys.executable,
            "-m",
            "controlplane",
            "serve",
            "--listen",
            self.address,
            "--consul",
            self.consul_addr,
            "--consul-probe-interval",
            "0.1",
            "--blocking-wait",
            "10",
            "--retry-max",
            "0.2",
            "--shutdown-grace",
            "5",
            "--metrics-listen",
            "",  # tests that read metrics pass their own port in extra_args (the later flag wins)
            *self.extra_args,
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                assert self.process is not None and self.process.poll() is None, "control plane exited"
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    return reply.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    return False

            wait_until(serving, timeout, what="control plane to serve")
        return self

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class HealthServer:
    """A real gRPC server on loopback whose grpc.health.v1 status a test controls."""

    def __init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.set_serving(True)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)

    def stop(self) -> None:
        self.server.stop(0).wait()


def all_pages(list_call: Callable[..., Any], request_type: Callable[..., Any], page_size: int = 0) -> list[Any]:
    """Every page of a paged list RPC (`paging.every_page`, at most 1,000 pages)."""
    return paging.every_page(list_call, request_type(page_size=page_size), timeout=30, max_pages=1000)


def ttl(seconds: int = 30) -> registry_pb2.HealthCheck:
    check = registry_pb2.HealthCheck()
    check.ttl.ttl.FromSeconds(seconds)
    return check


def grpc_check(interval_ms: int = 1000) -> registry_pb2.HealthCheck:
    check = registry_pb2.HealthCheck()
    check.grpc.interval.FromMilliseconds(interval_ms)
    return check


def operator_tokens(policy: Path, *names: str) -> dict[str, str]:
    """Write an authorization policy to `policy` in which each name is an operator with a bearer token of
    its own (`connect(address, token=...)`), so callers on one loopback address are told apart; name -> token."""
    tokens = {name: f"{name}-token" for name in names}
    policy.write_text(yaml.safe_dump({
        "trust_domain": "controlplane", "operators": ["spiffe://controlplane/operator/*"],
        "tokens": [{"identity": f"spiffe://controlplane/operator/{name}", "sha256": token_digest(token)}
                   for name, token in tokens.items()]}))
    return tokens
