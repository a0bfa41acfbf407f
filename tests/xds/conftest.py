"""Stock xDS clients (grpcio in a child process, no project import) and backends that say who they are."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from controlplane.v1 import config_pb2_grpc, registry_pb2
from controlplane.xds.bootstrap import bootstrap_json
from tests.config.conftest import set_config
from tests.helpers import ControlPlaneProcess, grpc_check, wait_until

HERE = Path(__file__).resolve().parent


class Backend:
    """A gRPC server answering /xds.test.Echo/Who with its name (or failing with `fail_with`), with health."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.fail_with: grpc.StatusCode | None = None
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)

        def who(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls += 1
            if self.fail_with is not None:
                context.abort(self.fail_with, f"{self.name} fails")
            return self.name.encode()

        handler = grpc.unary_unary_rpc_method_handler(who)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("xds.test.Echo", {"Who": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait()


NODE_MODULES = HERE.parents[1] / "tools" / "node-xds" / "node_modules"


class StockClient:
    """A stock client in a child process, bootstrapped at the control plane: tests/xds/stock_client.py
    (mode "sync" or "aio", grpcio) or tests/xds/stock_client.js (mode "node", grpc-js with grpc-js-xds)."""

    def __init__(self, control_plane: str, mode: str = "sync", node_id: str = "test-client") -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "GRPC_XDS_BOOTSTRAP_CONFIG": bootstrap_json(control_plane, node_id)}
        if mode == "node":
            node = shutil.which("node")
            if node is None or not (NODE_MODULES / "@grpc" / "grpc-js-xds").is_dir():
                pytest.fail("Node.js and tools/node-xds are needed for the polyglot test: run `make deps`")
            command = [node, str(HERE / "stock_client.js")]
            env["NODE_PATH"] = str(NODE_MODULES)
        else:
            command = [sys.executable, str(HERE / "stock_client.py"), mode]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        cwd="/")

    def calls(self, target: str, n: int, timeout: float = 5.0, metadata: list[list[str]] | None = None,
              wait_for_ready: bool | None = None) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"target": target, "calls": n, "timeout": timeout, "metadata": metadata,
                                             "wait_for_ready": wait_for_ready}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the stock client exited ({self.process.poll()})"
        return json.loads(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def backends(register: Callable[..., registry_pb2.Instance]) -> Iterator[Callable[..., Backend]]:
    """Start a backend registered as an instance of `service` (gRPC health checked every second)."""
    started: list[Backend] = []

    def start(service: str, name: str, version: str = "0.1.0") -> Backend:
        backend = Backend(name)
        started.append(backend)
        instance = register(service=service, address="127.0.0.1", port=backend.port, version=version,
                            check=grpc_check(1000), instance_id=name)
        backend.instance_id = instance.instance_id  # type: ignore[attr-defined]
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def stock_clients(control_plane: ControlPlaneProcess) -> Iterator[Callable[..., StockClient]]:
    made: list[StockClient] = []

    def make(mode: str = "sync") -> StockClient:
        client = StockClient(control_plane.address, mode)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


# --- policies and waiting ---------------------------------------------------------------------------------


def set_policy(config: object, service: str, policy: dict[str, object], expected: int) -> int:
    """Write the service's traffic policy; the new document version."""
    return set_config(config, service, {"traffic_policy": policy}, expected=expected).version  # type: ignore[arg-type]


def served(client: StockClient, target: str, n: int = 10) -> dict[str, int]:
    return client.calls(target, n, wait_for_ready=True)["by"]


@pytest.fixture
def config(channel: object) -> object:
    return config_pb2_grpc.ConfigServiceStub(channel)  # type: ignore[arg-type]


def ready(client: StockClient, target: str, names: set[str]) -> None:
    wait_until(lambda: set(served(client, target, 20)) == names, timeout=15, what=f"{names} to be served")
