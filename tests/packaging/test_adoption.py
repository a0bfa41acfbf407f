"""A team adopts the library: the wheel in a fresh venv, their own proto, two asyncio services on the host.

Nothing of the repository is importable there: the app sees only what `pip install controlplane[service,
typing]` installed. Checked: one trace across the two hops (the caller gets its id; both services' spans
reach a local OTLP receiver, flushed on SIGTERM), the deadline budget carried to the second hop, a
breaker refusing locally with its typed cause, clean exits on SIGTERM, and `mypy --strict` on the app
(which also rejects a wrong message type, so the stubs are typed, not Any).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import ROOT

PROTO = """
syntax = "proto3";
package shop.v1;
service Greeter {
  rpc Hello(HelloRequest) returns (HelloReply);
}
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; double budget_seconds = 2; string served_by = 3; }
"""

APP = '''
"""A team's own app: `backend PORTFILE`, `frontend PORTFILE BACKEND`, or `client FRONTEND DEAD`."""
from __future__ import annotations

import asyncio
import sys

import grpc

from controlplane.interceptors import (BreakerOpen, BreakerPolicy, ClientPolicy, aio_client_interceptors,
                                       setup_tracing, trace_id_of)
from controlplane.service import AioServiceHost, HostSettings
from shop.v1 import greeter_pb2, greeter_pb2_grpc


class Backend(greeter_pb2_grpc.GreeterServicer):
    async def Hello(self, request: greeter_pb2.HelloRequest,
                    context: grpc.aio.ServicerContext[greeter_pb2.HelloRequest, greeter_pb2.HelloReply]
                    ) -> greeter_pb2.HelloReply:
        remaining = context.time_remaining() or 0.0
        return greeter_pb2.HelloReply(message=f"hello {request.name}", budget_seconds=remaining, served_by="backend")


class Frontend(greeter_pb2_grpc.GreeterServicer):
    def __init__(self, backend: greeter_pb2_grpc.GreeterAsyncStub) -> None:
        self.backend = backend

    async def Hello(self, request: greeter_pb2.HelloRequest,
                    context: grpc.aio.ServicerContext[greeter_pb2.HelloRequest, greeter_pb2.HelloReply]
                    ) -> greeter_pb2.HelloReply:
        reply: greeter_pb2.HelloReply = await self.backend.Hello(request)  # no timeout: the budget applies
        return reply


async def serve(name: str, port_file: str, backend: str | None) -> int:
    setup_tracing(name)
    host = AioServiceHost(HostSettings(name, shutdown_grace=1))
    if backend is None:
        greeter_pb2_grpc.add_GreeterServicer_to_server(Backend(), host.server)
    else:
        stub = greeter_pb2_grpc.GreeterStub(host.channel_to(backend))  # typed as the async stub
        greeter_pb2_grpc.add_GreeterServicer_to_server(Frontend(stub), host.server)

    async def announce() -> None:
        while not host.port:
            await asyncio.sleep(0.01)
        with open(port_file, "w") as out:
            out.write(str(host.port))

    announcing = asyncio.ensure_future(announce())
    code = await host.serve("shop.v1.Greeter")
    announcing.cancel()
    return code


async def client(frontend: str, dead: str) -> int:
    async with grpc.aio.insecure_channel(frontend, interceptors=aio_client_interceptors()) as channel:
        call = greeter_pb2_grpc.GreeterStub(channel).Hello(greeter_pb2.HelloRequest(name="ada"), timeout=2.0)
        reply = await call
        print("reply", reply.message, reply.served_by, round(reply.budget_seconds, 3), trace_id_of(call), sep="|")
    policy = ClientPolicy(breaker=BreakerPolicy(minimum_calls=1, window_size=1, wait_in_open=60))
    async with grpc.aio.insecure_channel(dead, interceptors=aio_client_interceptors(policy)) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)
        for _ in range(2):
            try:
                await stub.Hello(greeter_pb2.HelloRequest(name="x"), timeout=1.0)
            except grpc.aio.AioRpcError as error:
                cause = getattr(error, "cause", None)
                print("refused", error.code().name, isinstance(cause, BreakerOpen), sep="|")
    return 0


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "client":
        sys.exit(asyncio.run(client(sys.argv[2], sys.argv[3])))
    sys.exit(asyncio.run(serve(mode, sys.argv[2], sys.argv[3] if mode == "frontend" else None)))
'''

WRONG = '''
from shop.v1 import greeter_pb2, greeter_pb2_grpc
import grpc

def wrong(channel: grpc.Channel) -> None:
    greeter_pb2_grpc.GreeterStub(channel).Hello(greeter_pb2.HelloReply())
'''


@pytest.fixture(scope="module")
def adopter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh venv with the wheel installed, the app's folder with its generated code)."""
    root = tmp_path_factory.mktemp("adopter")
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("controlplane-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                f"{wheel}[service,typing]", "mypy>=1.10,<2"], capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    app = root / "app"
    (app / "protos" / "shop" / "v1").mkdir(parents=True)
    (app / "protos" / "shop" / "v1" / "greeter.proto").write_text(PROTO)
    plugin = Path(sys.executable).parent / "protoc-gen-mypy_grpc"  # the team's own protoc run, with our tools
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(app / "protos"),
                    f"--plugin=protoc-gen-mypy_grpc={plugin}", f"--python_out={app}", f"--grpc_python_out={app}",
                    f"--pyi_out={app}", f"--mypy_grpc_out={app}", "shop/v1/greeter.proto"],
                   check=True, timeout=60, capture_output=True)
    for folder in (app / "shop", app / "shop" / "v1"):
        (folder / "__init__.py").write_text("")
    (app / "app.py").write_text(textwrap.dedent(APP))
    (app / "wrong.py").write_text(WRONG)
    return python, app


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """A local OTLP/gRPC trace receiver: (endpoint, [(service.name, span name, trace id)])."""
    received: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        message = ExportTraceServiceRequest.FromString(request)
        with lock:
            for resource_spans in message.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    received.extend((service, span.name, span.trace_id.hex()) for span in scope.spans)
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(2))
    handler = grpc.method_handlers_generic_handler("opentelemetry.proto.collector.trace.v1.TraceService",
                                                   {"Export": grpc.unary_unary_rpc_method_handler(export)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(None)


def start(python: Path, app: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], int]:
    port_file = app / f"{args[0]}.port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([str(python), "app.py", args[0], str(port_file), *args[1:]], cwd=app, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = 200
    while not port_file.exists() or not port_file.read_text():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        deadline -= 1
        assert deadline > 0, f"{args[0]} never announced its port"
        threading.Event().wait(0.05)
    return process, int(port_file.read_text())


def test_a_team_app_on_the_installed_wheel_traces_two_hops_and_stops_cleanly(adopter, receiver) -> None:
    python, app = adopter
    endpoint, received = receiver
    env = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # spans leave only when flushed: at SIGTERM
    backend, backend_port = start(python, app, env, "backend")
    frontend, frontend_port = start(python, app, env, "frontend", f"127.0.0.1:{backend_port}")
    try:
        dead = subprocess.run([str(python), "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); "
                               "print(s.getsockname()[1])"], capture_output=True, text=True, check=True).stdout
        done = subprocess.run([str(python), "app.py", "client", f"127.0.0.1:{frontend_port}",
                               f"127.0.0.1:{dead.strip()}"], cwd=app, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.splitlines()
        _, message, served_by, budget, trace_id = lines[0].split("|")
        assert (message, served_by) == ("hello ada", "backend")
        assert 0 < float(budget) < 2.0  # the second hop got what was left of the caller's 2 s
        assert len(trace_id) == 32
        assert lines[1:] == ["refused|UNAVAILABLE|False", "refused|UNAVAILABLE|True"]
        for process in (frontend, backend):
            process.send_signal(signal.SIGTERM)
        assert frontend.wait(30) == 0 and backend.wait(30) == 0
    finally:
        for process in (frontend, backend):
            if process.poll() is None:
                process.kill()
                process.wait()
    in_trace = sorted((service, name) for service, name, trace in received if trace == trace_id)
    assert in_trace == [("backend", "/shop.v1.Greeter/Hello"), ("frontend", "/shop.v1.Greeter/Hello"),
                        ("frontend", "/shop.v1.Greeter/Hello")]  # frontend: its server span and its client span


def test_the_app_type_checks_strictly_and_a_wrong_message_does_not(adopter) -> None:
    python, app = adopter
    strict = subprocess.run([str(python), "-m", "mypy", "--strict", "app.py"], cwd=app, capture_output=True,
                            text=True, timeout=300)
    assert strict.returncode == 0, strict.stdout[-3000:]
    wrong = subprocess.run([str(python), "-m", "mypy", "--strict", "wrong.py"], cwd=app, capture_output=True,
                           text=True, timeout=300)
    assert wrong.returncode == 1 and "arg-type" in wrong.stdout, wrong.stdout[-3000:]
