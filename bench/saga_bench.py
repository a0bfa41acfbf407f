"""Saga throughput and latency, next to Consul's raw KV write rate on the same machine.

Standalone: starts its own Consul agent (persistent, like production), a control plane, and a process
hosting three participants on one gRPC server (inventory Reserve, payment Charge, order ConfirmOrder,
each deduplicating on the idempotency key), then offers 3-step sagas at fixed rates and prints a table.

    .venv/bin/python bench/saga_bench.py [--rates 100,150,200] [--seconds 12]

Load is open loop (sagas arrive at the offered rate whether or not earlier ones finished), so latency
includes queueing. Saga latency is what Consul recorded, from the saga_started transition to
saga_completed, read back through ListSagas; every tenth saga is also timed by the client, from
sending StartSaga until WatchSaga reports it completed. For each rate the table also shows the
control plane's CPU time per saga and how busy each process was (from /proc; "-" where unavailable):
everything shares the machine's CPUs, so a busy participant or Consul slows the control plane too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import grpc_floor
from google.protobuf import json_format
from proc_cpu import cpu_seconds

from controlplane import endpoints
from controlplane.consul.client import connect
from controlplane.consul.local_agent import LocalConsul, free_port, free_ports
from controlplane.v1 import saga_pb2, saga_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]

SERVICES = {"inventory": "bench-inventory", "payment": "bench-payment", "order": "bench-order"}


# -- participants (run in their own process) ------------------------------------------------------

def run_participants(control_plane: str) -> None:
    """Serve the three participants until SIGTERM."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from controlplane.registry.client import SelfRegistration
    from controlplane.saga.idempotency import MemoryIdempotencyStore, idempotent
    from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
    from demo.order.v1 import order_pb2, order_pb2_grpc
    from demo.payment.v1 import payment_pb2, payment_pb2_grpc

    stores = {kind: MemoryIdempotencyStore() for kind in SERVICES}

    class Inventory(inventory_pb2_grpc.InventoryServiceServicer):
        @idempotent(stores["inventory"])
        def Reserve(self, request, context):  # type: ignore[no-untyped-def]
            return inventory_pb2.ReserveResponse(reservation=inventory_pb2.Reservation(
                reservation_id=uuid.uuid4().hex[:12], order_id=request.order_id, items=request.items))

        @idempotent(stores["inventory"])
        def Release(self, request, context):  # type: ignore[no-untyped-def]
            return inventory_pb2.ReleaseResponse()

    class Payment(payment_pb2_grpc.PaymentServiceServicer):
        @idempotent(stores["payment"])
        def Charge(self, request, context):  # type: ignore[no-untyped-def]
            return payment_pb2.ChargeResponse(payment=payment_pb2.Payment(
                payment_id=uuid.uuid4().hex[:12], order_id=request.order_id, amount_cents=request.amount_cents))

        @idempotent(stores["payment"])
        def Refund(self, request, context):  # type: ignore[no-untyped-def]
            return payment_pb2.RefundResponse()

    class Orders(order_pb2_grpc.OrderServiceServicer):
        @idempotent(stores["order"])
        def ConfirmOrder(self, request, context):  # type: ignore[no-untyped-def]
            return order_pb2.ConfirmOrderResponse(order=order_pb2.Order(order_id=request.order_id))

        @idempotent(stores["order"])
        def CancelOrder(self, request, context):  # type: ignore[no-untyped-def]
            return order_pb2.CancelOrderResponse()

    # One server hosts all three services (registered as three services at one address): the
    # participants share the machine with the system under test, so they should cost little CPU.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    inventory_pb2_grpc.add_InventoryServiceServicer_to_server(Inventory(), server)
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(Payment(), server)
    order_pb2_grpc.add_OrderServiceServicer_to_server(Orders(), server)
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    registrations = [SelfRegistration(control_plane, name, "127.0.0.1", port, check_interval=1.0)
                     for name in SERVICES.values()]
    for registration in registrations:
        registration.register()
    print(f"participants ready 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for registration in registrations:
        registration.deregister()
    server.stop(0)


# -- measurements ---------------------------------------------------------------------------------

async def consul_write_rate(consul_addr: str, seconds: float, writers: int) -> float:
    """Single-key KV PUTs per second with `writers` concurrent writers (each PUT is one Raft write)."""
    client = connect(consul_addr, request_timeout=10)
    done = 0
    deadline = time.monotonic() + seconds

    async def writer(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < deadline:
            await client.kv.put(f"bench/raw/{n}/{i}", "x" * 200)
            i += 1
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    elapsed = time.monotonic() - started
    await client.close()
    return done / elapsed


def definition() -> saga_pb2.SagaDefinition:
    return json_format.ParseDict({
        "name": "bench-order",
        "steps": [
            {"name": "reserve", "target_service": SERVICES["inventory"],
             "action": "/demo.inventory.v1.InventoryService/Reserve",
             "compensation": "/demo.inventory.v1.InventoryService/Release",
             "request_template": {"order_id": "$.order_id", "items": "$.items"},
             "response_mapping": {"reservation_id": "reservation.reservation_id"}},
            {"name": "charge", "target_service": SERVICES["payment"],
             "action": "/demo.payment.v1.PaymentService/Charge",
             "compensation": "/demo.payment.v1.PaymentService/Refund",
             "request_template": {"order_id": "$.order_id", "user_id": "$.user_id", "amount_cents": "$.amount"},
             "response_mapping": {"payment_id": "payment.payment_id"}},
            {"name": "confirm", "target_service": SERVICES["order"],
             "action": "/demo.order.v1.OrderService/ConfirmOrder",
             "compensation": "/demo.order.v1.OrderService/CancelOrder",
             "request_template": {"order_id": "$.order_id"}},
        ],
    }, saga_pb2.SagaDefinition())


def machine_busy_seconds() -> float | None:
    """CPU time (seconds, all CPUs) the whole machine has spent busy so far; None when /proc cannot tell."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU time used by named processes, and by everything else on the machine, between `start()` and
    `stop()`. Other load (another test run, say) makes a run's figures meaningless: it is shown too."""

    OTHERS = "others"

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._start: dict[str, float | None] = {}
        self._began = 0.0
        self.used: dict[str, float | None] = {}  # seconds of CPU
        self.wall = 0.0

    def _sample(self) -> dict[str, float | None]:
        return {**{name: cpu_seconds(pid) for name, pid in self.pids.items()}, self.OTHERS: machine_busy_seconds()}

    def start(self) -> None:
        self._began = time.monotonic()
        self._start = self._sample()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._began
        for name, now in self._sample().items():
            then = self._start.get(name)
            self.used[name] = now - then if now is not None and then is not None else None
        ours = [self.used[name] for name in self.pids]
        machine = self.used[self.OTHERS]
        self.used[self.OTHERS] = (max(0.0, machine - sum(u for u in ours if u is not None))
                                  if machine is not None and None not in ours else None)

    def share(self, name: str) -> str:
        """CPU use of `name` as a percentage of one CPU."""
        used = self.used.get(name)
        return f"{100 * used / self.wall:.0f}%" if used is not None and self.wall else "-"

    def shares(self) -> str:
        return " / ".join(self.share(name) for name in [*self.pids, self.OTHERS])


class RuntimeMeter:
    """Where a latency tail comes from, read from the control plane's metrics endpoint around one rate: the
    longest event-loop stall and the garbage collector's pauses (count, total, longest)."""

    def __init__(self, metrics_port: int) -> None:
        self.port = metrics_port
        self._before: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.diff: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    def start(self) -> None:
        self._before = self._scrape()

    def stop(self) -> None:
        after = self._scrape()
        self.diff = {key: value - self._before.get(key, 0.0) for key, value in after.items()}

    def _buckets(self, name: str, **match: str) -> list[tuple[float, float]]:
        """A histogram's cumulative bucket counts gained over the rate, (upper bound, count) in order, summed
        over the label sets that carry `match`."""
        buckets: dict[float, float] = {}
        for (sample, labels), gained in self.diff.items():
            found = dict(labels)
            if sample == f"{name}_bucket" and all(found.get(k) == v for k, v in match.items()):
                bound = float(found["le"])
                buckets[bound] = buckets.get(bound, 0.0) + gained
        return sorted(buckets.items())

    def _quantile(self, name: str, q: float, **match: str) -> float:
        """The upper bound of the bucket holding quantile `q` of what was observed (seconds); q=1: the longest."""
        ordered = self._buckets(name, **match)
        total = ordered[-1][1] if ordered else 0.0
        for bound, count in ordered:
            if total and count >= q * total - 1e-9:
                return bound
        return 0.0

    def _longest(self, name: str, **match: str) -> float:
        return self._quantile(name, 1.0, **match)

    def _total(self, sample: str) -> float:
        return sum(v for (name, _), v in self.diff.items() if name == sample)

    def summary(self) -> str:
        if not self.diff:
            return "-"
        stall = self._longest("controlplane_event_loop_lag_seconds")
        pauses = self._total("controlplane_gc_pause_seconds_count")
        paused = self._total("controlplane_gc_pause_seconds_sum")
        longest_gc = self._longest("controlplane_gc_pause_seconds")
        return (f"loop stall {_bound(stall)}; GC {pauses:.0f} pauses, {paused * 1000:.0f} ms in all, "
                f"longest {_bound(longest_gc)}; Consul write transactions "
                + self._tail("controlplane_consul_request_seconds", operation="write transaction")
                + "; participant calls " + self._tail("controlplane_saga_step_seconds", kind="action"))

    def _tail(self, name: str, **match: str) -> str:
        return f"p99 {_bound(self._quantile(name, 0.99, **match))}, longest {_bound(self._longest(name, **match))}"


def _bound(seconds: float) -> str:
    return "inf" if seconds == float("inf") else f"<= {seconds * 1000:g} ms"


@dataclass
class Step:
    """One offered rate: what was asked for and what came out."""

    offered: float
    started: int = 0
    completed: int = 0
    other: int = 0
    achieved: float = 0.0
    latencies: list[float] = field(default_factory=list)  # recorded: StartSaga accepted -> completed
    observed: list[float] = field(default_factory=list)  # client: StartSaga sent -> WatchSaga says completed
    cpu: CpuMeter | None = None
    runtime: RuntimeMeter | None = None
    drivers: dict[str, int] = field(default_factory=dict)  # replica -> sagas whose every attempt it made
    shared: int = 0  # sagas whose attempts more than one replica made (a handover; must be 0 here)

    @property
    def cpu_per_saga(self) -> str:
        """Control-plane CPU milliseconds per started saga (every replica's together)."""
        used = None
        if self.cpu:
            mine = [u for name, u in self.cpu.used.items() if name.startswith("control plane")]
            used = None if None in mine else sum(u for u in mine if u is not None)
        return f"{1000 * used / self.started:.2f} ms" if used is not None and self.started else "-"


ENDED = (saga_pb2.SAGA_STATUS_COMPLETED, saga_pb2.SAGA_STATUS_COMPENSATED, saga_pb2.SAGA_STATUS_NEEDS_ATTENTION)


async def offer(stub: saga_pb2_grpc.SagaServiceStub, rate: float, seconds: float, run_id: str,
                cpu: CpuMeter | None = None, runtime: RuntimeMeter | None = None) -> Step:
    """Start sagas at `rate` per second for `seconds` (open loop: arrivals do not wait for completions),
    watch every tenth one from the client, wait until every one has ended, then read every saga's
    recorded times from ListSagas. `cpu` measures from the first start until the last saga ended."""
    step = Step(offered=rate, cpu=cpu, runtime=runtime)
    definition_name = "bench-order"
    ids: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        order = f"{run_id}-{i}-{uuid.uuid4().hex[:8]}"
        request = saga_pb2.StartSagaRequest(saga_id=f"bench-{order}", definition_name=definition_name)
        request.input.update({"order_id": order, "user_id": "u1", "amount": 1999,
                              "items": [{"sku": "sku-1", "quantity": 1}]})
        sent = time.monotonic()
        await stub.StartSaga(request, timeout=30)
        ids.append(request.saga_id)
        if i % 10 == 0:
            status = 0
            async for update in stub.WatchSaga(saga_pb2.WatchSagaRequest(saga_id=request.saga_id), timeout=60):
                status = update.saga.status
            if status == saga_pb2.SAGA_STATUS_COMPLETED:
                step.observed.append(time.monotonic() - sent)

    if cpu is not None:
        cpu.start()
    if runtime is not None:
        runtime.start()
    begin = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    step.started = len(ids)
    wanted = set(ids)
    for _ in range(1200):  # until none of this step's sagas is running (a cheap query: the view's running keys)
        running = [s for status in (saga_pb2.SAGA_STATUS_RUNNING, saga_pb2.SAGA_STATUS_COMPENSATING)
                   for s in await list_sagas(stub, definition_name, status) if s.saga_id in wanted]
        if not running:
            break
        await asyncio.sleep(0.05)
    if cpu is not None:
        cpu.stop()
    if runtime is not None:
        runtime.stop()
    ended = [s for s in await list_sagas(stub, definition_name) if s.saga_id in wanted and s.status in ENDED]
    first_start, last_end = float("inf"), 0.0
    for s in ended:
        created, updated = s.created_at.ToNanoseconds() / 1e9, s.updated_at.ToNanoseconds() / 1e9
        if s.status == saga_pb2.SAGA_STATUS_COMPLETED:
            step.completed += 1
            step.latencies.append(updated - created)
            first_start, last_end = min(first_start, created), max(last_end, updated)
        else:
            step.other += 1
    step.achieved = step.completed / (last_end - first_start) if step.completed else 0.0
    await count_drivers(stub, [s.saga_id for s in ended], step)
    return step


async def count_drivers(stub: saga_pb2_grpc.SagaServiceStub, saga_ids: list[str], step: Step) -> None:
    """Which replica made each saga's attempts (GetSaga has them; ListSagas does not)."""
    for at in range(0, len(saga_ids), 50):
        sagas = await asyncio.gather(*(stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=saga_id), timeout=30)
                                       for saga_id in saga_ids[at:at + 50]))
        for reply in sagas:
            replicas = {a.replica for st in reply.saga.steps for a in st.attempts}
            if len(replicas) == 1:
                (only,) = replicas
                step.drivers[only] = step.drivers.get(only, 0) + 1
            else:
                step.shared += 1


async def list_sagas(stub: saga_pb2_grpc.SagaServiceStub, definition_name: str,
                     status: int = saga_pb2.SAGA_STATUS_UNSPECIFIED) -> list[saga_pb2.Saga]:
    found, token = [], ""
    while True:
        page = await stub.ListSagas(saga_pb2.ListSagasRequest(definition_name=definition_name, status=status,
                                                              page_size=500, page_token=token), timeout=30)
        found += page.sagas
        token = page.next_page_token
        if not token:
            return found


async def run_steps(address: str, rates: list[float], seconds: float, pids: dict[str, int | None],
                    metrics_port: int) -> list[Step]:
    # Every replica, round robin; StartSaga is safe to retry here since every call names its saga id.
    async with endpoints.aio_channel(address, idempotent=[endpoints.START_SAGA]) as channel:
        stub = saga_pb2_grpc.SagaServiceStub(channel)
        await stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition()), timeout=10)
        await offer(stub, 20, 2, "warmup")  # channels, caches and the JIT-less interpreter's first calls
        return [await offer(stub, rate, seconds, f"r{int(rate)}", CpuMeter(pids), RuntimeMeter(metrics_port))
                for rate in rates]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}" if values else "-"


TWO_REPLICA_RATE = 300.0  # with two replicas: at least this many sagas per second...
TWO_REPLICA_P99 = 0.150  # ...with a p99 under this
TARGET_CPU_MS = 2.0  # control-plane CPU per 3-step saga
TARGET_RATE = 150.0  # sagas per second...
TARGET_P99 = 0.100  # ...with a p99 saga latency under this many seconds (the aim on a 2-CPU machine)
FLOOR_SECONDS = 5.0  # seconds the gRPC floor runs at each rate


def measure_floor(participants: str, rates: list[float], seconds: float, workdir: Path, env: dict[str, str]
                  ) -> dict[float, float | None]:
    """The gRPC floor's CPU per request at each rate (see grpc_floor.py), after the sagas, on the same machine."""
    address = f"127.0.0.1:{free_port()}"
    with open(workdir / "floor.log", "wb") as log:
        floor = subprocess.Popen([sys.executable, str(ROOT / "bench" / "grpc_floor.py"), "--listen", address,
                                  "--participants", participants], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=log)
    try:
        assert floor.stdout is not None
        if grpc_floor.READY not in floor.stdout.readline().decode():
            raise RuntimeError("the gRPC floor process failed to start")
        return {rate: asyncio.run(grpc_floor.cpu_per_request(address, floor.pid, rate, seconds)) for rate in rates}
    finally:
        floor.send_signal(signal.SIGTERM)
        try:
            floor.wait(10)
        except subprocess.TimeoutExpired:
            floor.kill()


def report(steps: list[Step], raw_serial: float, raw_parallel: float, header: str,
           floor: dict[float, float | None]) -> None:
    print()
    print(header)
    print()
    print(f"Consul raw KV write rate (single-key PUTs, one Raft commit each):  "
          f"1 writer {raw_serial:.0f} writes/s,  16 writers {raw_parallel:.0f} writes/s")
    print()
    names = " / ".join([*steps[0].cpu.pids, CpuMeter.OTHERS]) if steps and steps[0].cpu else "-"
    print(f"{'offered':>9} {'achieved':>10} {'completed':>10} {'p50':>7} {'p99':>7}  {'client p50/p99':>15}  "
          f"{'CPU/saga':>9}  CPU use: {names}")
    print(f"{'sagas/s':>9} {'sagas/s':>10} {'':>10} {'ms':>7} {'ms':>7}  {'ms':>15}  {'ctl plane':>9}  "
          "(100% = one CPU)")
    print("-" * 133)
    for step in steps:
        client = f"{_ms(step.observed, 0.5)}/{_ms(step.observed, 0.99)}"
        shares = step.cpu.shares() if step.cpu else "-"
        print(f"{step.offered:>9g} {step.achieved:>10.1f} {f'{step.completed}/{step.started}':>10} "
              f"{_ms(step.latencies, 0.5):>7} {_ms(step.latencies, 0.99):>7}  {client:>15}  {step.cpu_per_saga:>9}  "
              f"{shares}" + (f"   ({step.other} did not complete)" if step.other else ""))
    print()
    print("achieved: completed sagas / (last completion - first start). p50/p99: saga latency as recorded in Consul, "
          "saga_started -> saga_completed")
    print("(4 Consul transactions, 3 participant calls). client: StartSaga sent -> WatchSaga reports completion, "
          "every tenth saga.")
    print()
    print("Each saga driven by exactly one replica (every attempt of a saga made by the same one):")
    for step in steps:
        spread = ", ".join(f"{replica} {count}" for replica, count in sorted(step.drivers.items()))
        verdict = "yes" if step.shared == 0 else f"NO: {step.shared} sagas had attempts by more than one replica"
        print(f"{step.offered:>9g}/s  {verdict} ({spread})")
    print()
    print("Where the tail comes from (the control plane's own metrics over each rate: its longest event-loop stall, "
          "its GC pauses,\nits Consul write transactions (group commits and takeovers) and its participant calls; "
          "histogram bucket bounds)")
    for step in steps:
        print(f"{step.offered:>9g}/s  {step.runtime.summary() if step.runtime else '-'}")
    met = [s for s in steps if s.offered >= TARGET_RATE and s.achieved >= 0.98 * s.offered
           and percentile(s.latencies, 0.99) < TARGET_P99]
    verdict = f"met at {', '.join(f'{s.offered:g}/s' for s in met)} offered" if met else "not met in this run"
    replicas = sum(1 for name in (steps[0].cpu.pids if steps and steps[0].cpu else ()) if name.startswith("control"))
    if replicas >= 2:
        met2 = [s for s in steps if s.offered >= TWO_REPLICA_RATE and s.achieved >= 0.98 * s.offered
                and percentile(s.latencies, 0.99) <= TWO_REPLICA_P99 and s.shared == 0]
        verdict2 = f"met at {', '.join(f'{s.offered:g}/s' for s in met2)}" if met2 else "not met in this run"
        print(f"Aim with {replicas} replicas (>= {TWO_REPLICA_RATE:g} sagas/s, p99 <= {TWO_REPLICA_P99 * 1000:g} ms, "
              f"one driver per saga): {verdict2}.")
    else:
        print(f"Aim, one replica (>= {TARGET_RATE:g} sagas/s with p99 < {TARGET_P99 * 1000:g} ms): {verdict}.")
    cpu = [f"{s.offered:g}/s {s.cpu_per_saga}" for s in steps]
    print(f"Aim: control-plane CPU per saga <= {TARGET_CPU_MS:g} ms; measured {', '.join(cpu)}.")
    floors = [f"{rate:g}/s " + (f"{1000 * used:.2f} ms" if used is not None else "-") for rate, used in floor.items()]
    print(f"The gRPC floor under it (grpc_floor.py: a grpc.aio process that serves StartSaga and makes the three "
          f"participant calls,\nnothing else; same machine, same run, {FLOOR_SECONDS:g} s per rate): "
          f"{', '.join(floors)} of CPU per saga.")


def wait_serving(address: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:  # one replica
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("control plane exited")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError("control plane did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds each offered rate runs")
    parser.add_argument("--rates", default="100,150,200", help="offered sagas per second, comma-separated")
    parser.add_argument("--window", type=float, default=0.002, help="group-commit window, seconds")
    parser.add_argument("--max-inflight", type=int, default=4, help="group-commit transactions in flight")
    parser.add_argument("--tracing", action="store_true",
                        help="let the control plane export its spans (to a JSON-lines file in the bench's temp dir)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="control-plane replicas against the one Consul; the client spreads StartSaga over them")
    parser.add_argument("--demo", action="store_true",
                        help="then run bench/demo_bench.py: the demo's orders per second beside these figures")
    parser.add_argument("--participants", metavar="CONTROL_PLANE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.participants:
        run_participants(args.participants)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    agent = LocalConsul(data_dir=workdir / "consul").start()
    processes: list[subprocess.Popen[bytes]] = []
    # Spans stay out of the repository's .traces/; unless --tracing, none are exported at all.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CONTROLPLANE_TRACE_DIR": str(workdir / "traces"),
           "OTEL_TRACES_EXPORTER": "jsonl" if args.tracing else "none"}
    try:
        raw_serial = asyncio.run(consul_write_rate(agent.http_addr, 3.0, 1))
        raw_parallel = asyncio.run(consul_write_rate(agent.http_addr, 3.0, 16))

        picked = free_ports("127.0.0.1", 2 * args.replicas)
        addresses = [f"127.0.0.1:{port}" for port in picked[:args.replicas]]
        metrics_ports = picked[args.replicas:]
        for n, (address, metrics_port) in enumerate(zip(addresses, metrics_ports, strict=True)):
            with open(workdir / f"controlplane-{n}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "controlplane", "serve", "--listen", address, "--consul", agent.http_addr,
                     "--saga-group-commit-window", str(args.window),
                     "--saga-group-commit-max-inflight", str(args.max_inflight), "--saga-replica-id", f"bench-{n}",
                     "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        for address, process in zip(addresses, processes, strict=True):
            wait_serving(address, process)
        address = ",".join(addresses)
        metrics_port = metrics_ports[0]
        participants = subprocess.Popen([sys.executable, __file__, "--participants", address], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        processes.append(participants)
        assert participants.stdout is not None
        ready = participants.stdout.readline().decode()
        if "participants ready" not in ready:
            raise RuntimeError("participants failed to start")
        participants_address = ready.split()[-1]
        time.sleep(2.5)  # Consul's first gRPC health checks of the participants (1 s interval)

        pids = {"control plane": processes[0].pid, "Consul": agent.pid, "participants": participants.pid,
                "bench client": os.getpid()}
        for n, process in enumerate(processes[1:len(addresses)], 2):
            pids[f"control plane {n}"] = process.pid
        rates = [float(r) for r in args.rates.split(",")]
        steps = asyncio.run(run_steps(address, rates, args.seconds, pids, metrics_port))
        floor = measure_floor(participants_address, rates, min(args.seconds, FLOOR_SECONDS), workdir, env)
        report(steps, raw_serial, raw_parallel,
               f"saga bench: {platform.node()} ({os.cpu_count()} CPUs), Consul {agent.version().split()[-1]} "
               f"(persistent, single node), group commit: {args.window * 1000:g} ms window, "
               f"{args.max_inflight} in flight; {args.seconds:g} s per rate, "
               f"span export {'jsonl' if args.tracing else 'off'}", floor)
        ok = all(step.other == 0 and step.completed == step.started and step.shared == 0 for step in steps)
        if args.demo:  # the whole demo (four services, the saga, tracing on) on the same machine, after the above
            print("\nThe demo's own figures, same machine, same run (bench/demo_bench.py):", flush=True)
            demo = subprocess.run([sys.executable, str(ROOT / "bench" / "demo_bench.py")], cwd=ROOT)
            ok = ok and demo.returncode == 0
        return 0 if ok else 1
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        agent.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
