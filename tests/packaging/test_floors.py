"""The declared floors are true: the wheel works with the oldest versions pyproject.toml allows.

Each test builds the project's wheel, makes a fresh venv, installs every dependency at its floor
(`name>=X` becomes `name==X`, read from pyproject.toml so the two cannot drift apart) and the wheel
without dependencies, then imports modules and makes a real traced loopback call there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE_MODULES = (
    "controlplane.interceptors",
    "controlplane.endpoints",
    "controlplane.discovery",
    "controlplane.config.client",
    "controlplane.registry.client",
    "controlplane.v1.registry_pb2_grpc",
    "controlplane.v1.config_pb2_grpc",
    "controlplane.v1.saga_pb2_grpc",
)
# Never needed by the core: what the server extra brings.
SERVER_ONLY = ("consul", "aiohttp", "jsonschema", "re2", "yaml", "opentelemetry.sdk")

# A traced loopback call, sync and asyncio, through the whole client and server stacks.
CALL = textwrap.dedent("""
    import asyncio, sys
    from concurrent import futures
    import grpc
    from controlplane.interceptors import (aio_client_interceptors, aio_server_interceptors,
        client_interceptors, server_interceptors, trace_id_of)

    def echo(request, context):
        return request

    handler = grpc.method_handlers_generic_handler("t.E", {"U": grpc.unary_unary_rpc_method_handler(echo)})
    provider = None
    if "--sdk" in sys.argv:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=server_interceptors(tracer_provider=provider))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{port}"),
                                     *client_interceptors(tracer_provider=provider))
    response, call = channel.unary_unary("/t.E/U").with_call(b"x", timeout=10)
    assert response == b"x"

    async def aio():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                             interceptors=aio_client_interceptors(tracer_provider=provider)) as ch:
            assert await ch.unary_unary("/t.E/U")(b"y", timeout=10) == b"y"

    asyncio.run(aio())
    server.stop(None)
    if provider is not None:
        kinds = sorted(span.kind.name for span in exporter.get_finished_spans())
        assert kinds == ["CLIENT", "CLIENT", "SERVER", "SERVER"], kinds
        assert trace_id_of(call), "no x-trace-id"
    print("call ok")
""")


def floors(requirements: list[str]) -> list[str]:
    """`["grpcio>=1.85.1,<2", "controlplane[tracing]"]` -> `["grpcio==1.85.1"]` (self-references dropped)."""
    pinned = []
    for requirement in requirements:
        if requirement.startswith("controlplane"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([^,;\s]+).*", requirement)
        assert match, f"{requirement!r} declares no floor"
        pinned.append(f"{match[1]}=={match[2]}")
    return pinned


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder), str(ROOT)],
                   check=True, timeout=300, capture_output=True)
    (built,) = folder.glob("controlplane-*.whl")
    return built


def venv_with(folder: Path, requirements: list[str], wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    installed = subprocess.run([*pip, *requirements], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=120, capture_output=True)
    return python


def run(python: Path, code: str, *args: str) -> str:
    done = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd="/")  # not the repo: only what is installed may be imported
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_core_floors_import_the_client_library_and_trace_a_call(wheel: Path, tmp_path: Path) -> None:
    python = venv_with(tmp_path / "core", floors(PYPROJECT["project"]["dependencies"]), wheel)
    imports = "\n".join(f"import {module}" for module in CORE_MODULES)
    leaked = run(python, f"{imports}\nimport sys\nprint(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))")
    assert leaked.strip() == "[]"
    assert "call ok" in run(python, CALL)


@pytest.mark.timeout(900)
def test_the_floors_of_every_extra_import_every_module(wheel: Path, tmp_path: Path) -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    requirements = floors(PYPROJECT["project"]["dependencies"])
    for extra in ("tracing", "service", "instrumentation", "server", "certs"):
        requirements += floors(extras[extra])
    python = venv_with(tmp_path / "full", requirements, wheel)
    every_module = textwrap.dedent("""
        import importlib, pkgutil, controlplane
        names = [m.name for m in pkgutil.walk_packages(controlplane.__path__, "controlplane.")
                 if not m.name.endswith(".__main__")]
        for name in names:
            importlib.import_module(name)
        print(len(names), "modules")
    """)
    assert "modules" in run(python, every_module)
    assert "call ok" in run(python, CALL, "--sdk")


def test_the_wheel_installs_controlplane_and_nothing_else_at_the_top_level(wheel: Path) -> None:
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        assert "controlplane/py.typed" in archive.namelist()
    assert {t for t in tops if not t.endswith(".dist-info")} == {"controlplane"}
