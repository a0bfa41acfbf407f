"""Registry benchmark: Discover latency against a bare health Check, and failure-detection time.

Run: `make bench` or `.venv/bin/python bench/registry_bench.py`. Starts its own Consul agent, control
plane and demo instances on loopback, and stops them. Figures are ratios against a baseline measured
in the same run, because these machines are noisy.
"""

from __future__ import annotations

import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the bench reuses the tests' process helpers

from controlplane.consul.local_agent import LocalConsul, free_port  # noqa: E402
from controlplane.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
from tests.helpers import ControlPlaneProcess, wait_until  # noqa: E402

CALLS = 2000
ROUNDS = 5
KILLS = 3


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def time_calls(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def discover_vs_check(address: str) -> dict[str, float]:
    with grpc.insecure_channel(address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        discover_request = registry_pb2.DiscoverRequest(service="bench")
        check_request = health_pb2.HealthCheckRequest()
        for _ in range(200):  # warm up: connection, cache, code paths
            registry.Discover(discover_request)
            health.Check(check_request)
        discover, check = [], []
        for _ in range(ROUNDS):  # interleave so drift in machine load hits both alike
            check += time_calls(lambda: health.Check(check_request), CALLS // ROUNDS)
            discover += time_calls(lambda: registry.Discover(discover_request), CALLS // ROUNDS)
    return {
        "check_p50_us": statistics.median(check) * 1e6,
        "discover_p50_us": statistics.median(discover) * 1e6,
        "check_p99_us": percentile(check, 99) * 1e6,
        "discover_p99_us": percentile(discover, 99) * 1e6,
        "ratio_p50": statistics.median(discover) / statistics.median(check),
    }


def kill_to_removal(address: str) -> tuple[float, float]:
    """Seconds from SIGKILL of an instance to its removal from Discover and from Watch."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.inventory",
            "--listen",
            f"127.0.0.1:{port}",
            "--control-plane",
            address,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with grpc.insecure_channel(address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)

        def mine() -> list[registry_pb2.Instance]:
            found = registry.Discover(registry_pb2.DiscoverRequest(service="inventory"), timeout=5).instances
            return [i for i in found if i.port == port]

        (instance,) = wait_until(mine, timeout=30)
        events: queue.Queue[tuple[float, registry_pb2.WatchResponse]] = queue.Queue()
        call = registry.Watch(registry_pb2.WatchRequest(service="inventory"), timeout=60)

        def read() -> None:
            try:
                for event in call:
                    events.put((time.perf_counter(), event))
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
        events.get(timeout=10)  # the snapshot
        killed = time.perf_counter()
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_until(lambda: not mine(), timeout=30, interval=0.005)
        from_discover = time.perf_counter() - killed
        while True:
            at, event = events.get(timeout=30)
            if (
                event.type == registry_pb2.WATCH_EVENT_TYPE_REMOVED
                and event.instance.instance_id == instance.instance_id
            ):
                break
        call.cancel()
        registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id))
    return from_discover, at - killed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        consul = LocalConsul(data_dir=Path(tmp) / "consul").start()
        plane = ControlPlaneProcess(consul.http_addr).start()
        try:
            latency = discover_vs_check(plane.address)
            kills = [kill_to_removal(plane.address) for _ in range(KILLS)]
        finally:
            plane.kill()
            consul.destroy()
    print("registry benchmark (loopback, sync client, one channel)")
    print(f"  health Check      p50 {latency['check_p50_us']:8.1f} us   p99 {latency['check_p99_us']:8.1f} us")
    print(f"  Discover          p50 {latency['discover_p50_us']:8.1f} us   p99 {latency['discover_p99_us']:8.1f} us")
    print(f"  Discover / Check  {latency['ratio_p50']:.2f}x (p50 ratio, {CALLS} calls each, interleaved)")
    print("  SIGKILL of an instance (gRPC check every 1s) to removal:")
    for n, (discover, watch) in enumerate(kills, 1):
        print(f"    run {n}: Discover {discover:5.2f} s   Watch {watch:5.2f} s")
    print(
        f"    median: Discover {statistics.median(k[0] for k in kills):.2f} s, "
        f"Watch {statistics.median(k[1] for k in kills):.2f} s"
    )


if __name__ == "__main__":
    main()
