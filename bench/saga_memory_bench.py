"""What a saga in flight costs the replica driving it in memory, measured, for sizing --saga-max-driving.

Run: `make bench` or `.venv/bin/python bench/saga_memory_bench.py [--sagas 2000]` (about a minute).
A throwaway Consul dev agent, one control plane, and a participant (in this process, grpc.aio) whose Reserve
never answers until the bench lets it: every saga started stays in flight, its first step's call open. The
control plane's resident memory (VmRSS) is read before and after starting the sagas, with small inputs and
with inputs of 60 KiB (StartSaga's limit is 64 KiB), and the growth divided by the sagas. The figure to
hold against: the default cap (5,000 sagas) times the per-saga growth must fit the process's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import grpc.aio
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from controlplane.consul.local_agent import LocalConsul, free_port
from controlplane.v1 import registry_pb2, registry_pb2_grpc, saga_pb2, saga_pb2_grpc
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "memory-bench-inventory"
DEFAULT_CAP = 5000
METRICS_PORT = free_port("127.0.0.1")


def participant_calls() -> str:
    """The control plane's grpc_client_handled_total lines for calls to the participant (codes they ended with)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return "\n".join(line for line in text.splitlines()
                     if ("grpc_client_handled_total{" in line or "breaker" in line) and not line.startswith("#"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class HangingInventory(inventory_pb2_grpc.InventoryServiceServicer):
    """Reserve holds every call open until `release` is set; then answers them all."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.open = 0
        self.received = 0
        self.cancelled = 0

    async def Reserve(self, request, context):  # type: ignore[no-untyped-def]
        self.open += 1
        self.received += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.open -= 1
        return inventory_pb2.ReserveResponse(reservation=inventory_pb2.Reservation(
            reservation_id=uuid.uuid4().hex[:12], order_id=request.order_id))

    async def Release(self, request, context):  # type: ignore[no-untyped-def]
        return inventory_pb2.ReleaseResponse()


def definition(name: str) -> saga_pb2.SagaDefinition:
    return json_format.ParseDict({
        "name": name,
        "steps": [{"name": "reserve", "target_service": SERVICE, "timeout": "3600s",
                   "action": "/demo.inventory.v1.InventoryService/Reserve",
                   "compensation": "/demo.inventory.v1.InventoryService/Release",
                   "request_template": {"order_id": "$.order_id"}}],
    }, saga_pb2.SagaDefinition())


async def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_instance(registry: registry_pb2_grpc.RegistryServiceStub) -> None:
    """Until Consul's first health check passed the participant (Discover shows passing instances)."""
    for _ in range(200):
        found = await registry.Discover(registry_pb2.DiscoverRequest(service=SERVICE), timeout=10)
        if found.instances:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the participant never passed its health check")


async def settle(pid: int) -> int:
    """The process's RSS once it stopped moving (allocations of the last calls done)."""
    last = rss_kib(pid)
    for _ in range(40):
        await asyncio.sleep(0.25)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


async def measure(address: str, pid: int, sagas: int) -> list[tuple[str, int, int, int]]:
    participant = HangingInventory()
    server = grpc.aio.server()
    inventory_pb2_grpc.add_InventoryServiceServicer_to_server(participant, server)
    checker = health.aio.HealthServicer()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    rows = []
    async with grpc.aio.insecure_channel(address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        check = registry_pb2.HealthCheck()
        check.grpc.interval.FromSeconds(1)
        await registry.Register(registry_pb2.RegisterRequest(service=SERVICE, address="127.0.0.1", port=port,
                                                             check=check), timeout=10)
        await wait_for_instance(registry)
        stub = saga_pb2_grpc.SagaServiceStub(channel)
        for label, padding in (("small input (~100 B)", 0), ("input of 60 KiB", 60 * 1024)):
            name = f"memory-{uuid.uuid4().hex[:6]}"
            await stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition(name)), timeout=10)
            participant.release.clear()
            before = await settle(pid)
            gate = asyncio.Semaphore(32)

            async def start_one(n: int, name: str = name, padding: int = padding,
                                gate: asyncio.Semaphore = gate) -> None:
                saga_input = struct_pb2.Struct()
                saga_input.update({"order_id": f"order-{n}-{uuid.uuid4().hex[:8]}", "note": "x" * padding})
                async with gate:
                    await stub.StartSaga(saga_pb2.StartSagaRequest(definition_name=name, input=saga_input),
                                         timeout=60)

            await asyncio.gather(*(start_one(n) for n in range(sagas)))
            try:
                await wait_for(lambda: participant.open >= sagas, 60, "every saga's call to be open")
            except TimeoutError:
                print(f"{participant.open} open, {participant.received} received, {participant.cancelled} cancelled; "
                      f"{participant_calls()}")
                raise
            during = await settle(pid)
            participant.release.set()
            await wait_for(lambda: participant.open == 0, 120, "the calls to be answered")
            rows.append((label, before, during, sagas))
    await server.stop(None)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=2000, help="sagas held in flight at once")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saga-memory-bench-"))
    agent = LocalConsul(dev=True).start()
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "CONTROLPLANE_TRACE_DIR": str(workdir / "traces")}
    with open(workdir / "controlplane.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--listen", address, "--consul", agent.http_addr,
             "--metrics-listen", f"127.0.0.1:{METRICS_PORT}", "--saga-max-driving", str(max(DEFAULT_CAP, args.sagas)),
             "--saga-max-driving-per-caller", str(max(DEFAULT_CAP, args.sagas)), "--saga-retention", "0",
             # Memory, not the breaker: every call here is slow (it waits for the bench), which would open it.
             "--saga-participant-policy", '{"breaker": null}'],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from saga_bench import wait_serving

        wait_serving(address, process)
        rows = asyncio.run(measure(address, process.pid, args.sagas))
    finally:
        process.kill()
        process.wait(10)
        agent.kill()
    print(f"saga memory bench: {args.sagas} sagas in flight at once on one replica, each with its first step's "
          "call open")
    print(f"  {'input':<22} {'RSS before':>11} {'RSS during':>11} {'per saga':>10} {'x default cap':>14}")
    for label, before, during, sagas in rows:
        per = (during - before) / sagas
        print(f"  {label:<22} {before / 1024:>8.1f} MiB {during / 1024:>8.1f} MiB {per:>7.1f} KiB "
              f"{per * DEFAULT_CAP / 1024:>10.0f} MiB")
    print(f"  (x default cap: --saga-max-driving {DEFAULT_CAP} sagas of that kind in flight)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
