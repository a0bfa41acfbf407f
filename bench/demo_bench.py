"""Demo throughput: orders per second through the place-order saga, with and without payment failures.

Run: `make bench` or `.venv/bin/python bench/demo_bench.py`. Starts the demo stack as `make up` does
(scripts/devstack.py) on free ports in a temporary folder, places orders from concurrent clients, waits
for every order to settle (confirmed or cancelled), and stops everything.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]

from controlplane.consul.local_agent import free_ports  # noqa: E402
from demo.order.v1 import order_pb2, order_pb2_grpc  # noqa: E402

ORDERS = 200
CLIENTS = 8
FAILURE_RATE = 0.2


def devstack(env: dict[str, str], command: str) -> None:
    done = subprocess.run([sys.executable, "scripts/devstack.py", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"devstack {command} failed:\n{done.stdout}\n{done.stderr}")


def set_failure_rate(env: dict[str, str], control_plane: str, rate: float) -> None:
    subprocess.run([sys.executable, "-m", "controlplane", "--control-plane", control_plane, "config", "set",
                    "payment", "--env", "dev", f"faults.failure_rate={rate}"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=60)


def run_orders(order_addr: str, n: int) -> dict[str, float]:
    """Place n orders from CLIENTS threads; wait until all settle. Orders/s and latency to settle."""
    with grpc.insecure_channel(order_addr) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        item = order_pb2.OrderItem(sku="apple", quantity=1, unit_price_cents=100)

        def one(_: int) -> tuple[float, int]:
            started = time.perf_counter()
            order = stub.CreateOrder(order_pb2.CreateOrderRequest(user_id="alice", items=[item]), timeout=30).order
            while True:
                status = stub.GetOrder(order_pb2.GetOrderRequest(order_id=order.order_id), timeout=10).order.status
                if status in (order_pb2.ORDER_STATUS_CONFIRMED, order_pb2.ORDER_STATUS_CANCELLED):
                    return time.perf_counter() - started, status
                time.sleep(0.01)

        begun = time.perf_counter()
        with futures.ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - begun
    latencies = sorted(r[0] for r in results)
    return {
        "orders_per_s": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "cancelled": sum(1 for r in results if r[1] == order_pb2.ORDER_STATUS_CANCELLED),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        *ports, control_port, consul_port, raft_port, serf_port = free_ports("127.0.0.1", 8)
        control_plane = f"127.0.0.1:{control_port}"
        env = {**os.environ, "DEVSTACK_DIR": folder, "DEVSTACK_CONTROL_PLANE_PORT": str(control_port),
               "DEVSTACK_CONSUL_PORT": str(consul_port),
               "DEVSTACK_CONSUL_SERVER_PORTS": f"{raft_port},{serf_port}",
               "DEVSTACK_DEMO_PORTS": ",".join(map(str, ports)),
               "OTEL_TRACES_EXPORTER": "jsonl", "CONTROLPLANE_TRACE_DIR": str(Path(folder) / "traces")}
        env.pop("CONSUL_HTTP_ADDR", None)
        devstack(env, "up")
        try:
            order_addr = f"127.0.0.1:{ports[1]}"
            run_orders(order_addr, 20)  # warm up
            healthy = run_orders(order_addr, ORDERS)
            set_failure_rate(env, control_plane, FAILURE_RATE)
            failing = run_orders(order_addr, ORDERS)
        finally:
            devstack(env, "down")
    print(f"demo benchmark: {ORDERS} orders from {CLIENTS} concurrent clients, each until settled (tracing on)")
    for label, r in (("no payment failures", healthy), (f"payment failure rate {FAILURE_RATE:g}", failing)):
        print(f"  {label:<26} {r['orders_per_s']:6.1f} orders/s   p50 {r['p50_ms']:7.1f} ms   "
              f"p99 {r['p99_ms']:8.1f} ms   cancelled {int(r['cancelled'])}/{ORDERS}")


if __name__ == "__main__":
    main()
