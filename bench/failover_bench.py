"""Failover: what clients see when one control-plane replica of two is SIGKILLed under order traffic.

Run: `make bench` or `.venv/bin/python bench/failover_bench.py`. Starts the demo as `make up REPLICAS=2`
does (the services are given both replicas) on free ports in a temporary folder. Clients place orders
without retrying (a failed CreateOrder counts as failed); first for BASELINE seconds with both replicas
up, then through ROUNDS kills, each of the other replica than the last, revived after WINDOW seconds.

Figures, each beside its aim: the share of CreateOrder calls that failed around a kill (aim < 1%), the
time from the kill until orders succeed again, i.e. until the last failure (aim < 1 s), and CreateOrder's
p99 latency and throughput around a kill as ratios to the baseline measured in the same run.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.consul.local_agent import free_ports  # noqa: E402
from demo.order.v1 import order_pb2, order_pb2_grpc  # noqa: E402

CLIENTS = 6
BASELINE = 10.0  # seconds
ROUNDS = 4
WINDOW = 6.0  # seconds measured after each kill before the replica is revived


@dataclass
class Calls:
    """Every CreateOrder: (start, end, ok), appended by the client threads."""

    done: list[tuple[float, float, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def between(self, start: float, end: float) -> list[tuple[float, float, bool]]:
        with self.lock:
            return [c for c in self.done if start <= c[0] < end]


def devstack(env: dict[str, str], command: str) -> None:
    done = subprocess.run([sys.executable, "scripts/devstack.py", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"devstack {command} failed:\n{done.stdout}\n{done.stderr}")


def clients(order_addr: str, calls: Calls, stop: threading.Event) -> list[threading.Thread]:
    def run() -> None:
        with grpc.insecure_channel(order_addr) as channel:
            stub = order_pb2_grpc.OrderServiceStub(channel)
            item = order_pb2.OrderItem(sku="apple", quantity=1, unit_price_cents=100)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    stub.CreateOrder(order_pb2.CreateOrderRequest(user_id="alice", items=[item]), timeout=10)
                    ok = True
                except grpc.RpcError:
                    ok = False
                with calls.lock:
                    calls.done.append((started, time.monotonic(), ok))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


def summary(window: list[tuple[float, float, bool]], seconds: float) -> tuple[float, float, float]:
    """(share failed, p99 latency in s, calls per second)."""
    latencies = sorted(end - start for start, end, _ in window)
    failed = sum(1 for *_, ok in window if not ok)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    return failed / max(1, len(window)), p99, len(window) / seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        picked = free_ports("127.0.0.1", 9)
        replica_ports, demo_ports, (consul_port, raft_port, serf_port) = picked[:2], picked[2:6], picked[6:]
        env = {**os.environ, "DEVSTACK_DIR": folder, "REPLICAS": "2",
               "DEVSTACK_CONTROL_PLANE_PORTS": ",".join(map(str, replica_ports)),
               "DEVSTACK_CONSUL_PORT": str(consul_port),
               "DEVSTACK_CONSUL_SERVER_PORTS": f"{raft_port},{serf_port}",
               "DEVSTACK_DEMO_PORTS": ",".join(map(str, demo_ports)), "OTEL_TRACES_EXPORTER": "none"}
        env.pop("CONSUL_HTTP_ADDR", None)
        devstack(env, "up")
        calls, stop = Calls(), threading.Event()
        rounds: list[tuple[float, float, float, float, float]] = []  # (failed, recovery s, p99, rate, longest)
        try:
            threads = clients(f"127.0.0.1:{demo_ports[1]}", calls, stop)
            time.sleep(2.0)  # warm up
            begun = time.monotonic()
            time.sleep(BASELINE)
            baseline = summary(calls.between(begun, begun + BASELINE), BASELINE)
            for n in range(ROUNDS):
                victim = "controlplane" if n % 2 == 0 else "controlplane-2"
                pid = int((Path(folder) / "pids" / f"{victim}.pid").read_text())
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                time.sleep(WINDOW)
                window = calls.between(killed, killed + WINDOW)
                failures = [end for _, end, ok in window if not ok]
                share, p99, rate = summary(window, WINDOW)
                longest = max((end - start for start, end, _ in window), default=0.0)
                rounds.append((share, max(failures) - killed if failures else 0.0, p99, rate, longest))
                devstack(env, "revive")
                time.sleep(2.0)  # let the clients' channels use the revived replica again
            stop.set()
            for thread in threads:
                thread.join(15)
        finally:
            stop.set()
            devstack(env, "down")
    share, recovery = max(r[0] for r in rounds), max(r[1] for r in rounds)
    p99, rate = statistics.mean(r[2] for r in rounds), statistics.mean(r[3] for r in rounds)
    print(f"failover benchmark: {CLIENTS} clients placing orders without retrying; {ROUNDS} SIGKILLs of one "
          f"replica of two, {WINDOW:g} s measured after each (baseline {BASELINE:g} s, both replicas up)")
    print(f"  baseline: {baseline[2]:.1f} CreateOrder/s, p99 {baseline[1] * 1000:.1f} ms, "
          f"{baseline[0]:.2%} failed")
    print(f"  failed CreateOrder around a kill (worst round)  {share:7.2%}   aim < 1%")
    print(f"  kill -> last failed CreateOrder (worst round)   {recovery:7.3f} s  aim < 1 s")
    print(f"  longest CreateOrder around a kill (worst round) {max(r[4] for r in rounds):7.3f} s  aim < 1 s")
    print(f"  CreateOrder p99 around a kill / baseline        {p99 / baseline[1]:7.2f}x  aim <= 3x")
    print(f"  CreateOrder/s around a kill / baseline          {rate / baseline[2]:7.2f}x  aim >= 0.5x")
    print("  per round (failed, recovery s, p99 ms, calls/s): "
          + "; ".join(f"{r[0]:.2%}, {r[1]:.3f}, {r[2] * 1000:.0f}, {r[3]:.1f}" for r in rounds))


if __name__ == "__main__":
    main()
