"""xDS benchmark: how fast registry changes reach ADS streams, and what an xds:/// channel costs per call.

Run: `make bench` or `.venv/bin/python bench/xds_bench.py` (about a minute). Starts its own Consul agent,
control plane and backends on loopback, and stops them. In one run:

1. SIGKILL of an instance (gRPC health check every second) -> an EDS update without it on an ADS stream (what
   every stock xDS client receives), next to the same kill -> REMOVED on a RegistryService.Watch stream.
2. A registry change (an instance registered) -> the EDS update on each of 100 ADS streams, next to
   Consul's own delivery of the same change to a blocking query on the health endpoint.
3. Per call: a stock grpcio channel to xds:///SERVICE against a plain channel to the same server, interleaved.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the bench reuses the tests' process helpers

from controlplane.consul.local_agent import LocalConsul, free_port  # noqa: E402
from controlplane.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
from controlplane.xds.ads import METHOD  # noqa: E402
from controlplane.xds.bootstrap import bootstrap_json  # noqa: E402
from controlplane.xds.resources import ENDPOINTS  # noqa: E402
from controlplane.xds.v1 import envoy_wire_pb2 as w  # noqa: E402
from tests.helpers import ControlPlaneProcess, grpc_check, ttl, wait_until  # noqa: E402
from tests.xds.conftest import Backend  # noqa: E402

KILLS = 5
STREAMS = 100
CHANGES = 5
ROUNDS = 10
CALLS_PER_ROUND = 200

BACKEND_SCRIPT = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from tests.xds.conftest import Backend
backend = Backend(sys.argv[2])
print(backend.port, flush=True)
threading.Event().wait()
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ports_in(response: w.DiscoveryResponse) -> set[int]:
    found = set()
    for resource in response.resources:
        for locality in w.ClusterLoadAssignment.FromString(resource.value).endpoints:
            found |= {e.endpoint.address.socket_address.port_value for e in locality.lb_endpoints}
    return found


class AdsStream:
    """One raw ADS stream subscribed to a service's endpoints, ACKing every response, timing each arrival."""

    def __init__(self, channel: grpc.aio.Channel, service: str, node: str) -> None:
        self.service = service
        self.node = node
        self.arrivals: list[tuple[float, set[int]]] = []
        self.changed = asyncio.Event()
        self._requests: asyncio.Queue[w.DiscoveryRequest] = asyncio.Queue()
        self._call = channel.stream_stream(METHOD, request_serializer=w.DiscoveryRequest.SerializeToString,
                                           response_deserializer=w.DiscoveryResponse.FromString)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _requests_iter(self):  # type: ignore[no-untyped-def]
        while True:
            yield await self._requests.get()

    async def _run(self) -> None:
        self._requests.put_nowait(w.DiscoveryRequest(type_url=ENDPOINTS, resource_names=[self.service],
                                                     node=w.Node(id=self.node)))
        call = self._call(self._requests_iter())
        async for response in call:
            self.arrivals.append((time.perf_counter(), ports_in(response)))
            self.changed.set()
            self._requests.put_nowait(w.DiscoveryRequest(type_url=ENDPOINTS, resource_names=[self.service],
                                                         response_nonce=response.nonce,
                                                         version_info=response.version_info))

    async def first_with(self, test, after: float, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
        """The arrival time of the first response after `after` whose ports pass `test`."""
        deadline = time.monotonic() + timeout
        while True:
            for at, ports in self.arrivals:
                if at >= after and test(ports):
                    return at
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))

    def close(self) -> None:
        self._task.cancel()


# --- 1. SIGKILL to removal ------------------------------------------------------------------------------------


def kill_to_removal(address: str) -> tuple[list[float], list[float]]:
    async def run() -> tuple[list[float], list[float]]:
        eds, watch = [], []
        async with grpc.aio.insecure_channel(address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            for n in range(KILLS):
                process = subprocess.Popen([sys.executable, "-c", BACKEND_SCRIPT, str(ROOT), f"victim-{n}"],
                                           stdout=subprocess.PIPE, text=True)
                port = int(process.stdout.readline())  # type: ignore[union-attr]
                await registry.Register(registry_pb2.RegisterRequest(
                    service="xds-kill", instance_id=f"victim-{n}", address="127.0.0.1", port=port,
                    check=grpc_check(1000)), timeout=5)
                stream = AdsStream(channel, "xds-kill", f"kill-{n}")
                await stream.first_with(lambda ports, port=port: port in ports, 0.0)
                events = registry.Watch(registry_pb2.WatchRequest(service="xds-kill"), timeout=60)
                await events.read()  # the snapshot
                killed = time.perf_counter()
                process.send_signal(signal.SIGKILL)
                process.wait()
                while True:
                    event = await events.read()
                    if event.type == registry_pb2.WATCH_EVENT_TYPE_REMOVED and event.instance.port == port:
                        watch.append(time.perf_counter() - killed)
                        break
                eds.append(await stream.first_with(lambda ports, port=port: port not in ports, killed) - killed)
                events.cancel()
                stream.close()
                await registry.Deregister(registry_pb2.DeregisterRequest(instance_id=f"victim-{n}"), timeout=5)
        return eds, watch

    return asyncio.run(run())


# --- 2. one change to 100 streams -----------------------------------------------------------------------------


def consul_delivery(consul: str, service: str, index: int, arrivals: list[float]) -> None:
    """One blocking query on Consul's health endpoint: when does Consul itself deliver the change."""
    url = f"http://{consul}/v1/health/service/{service}?passing=1&index={index}&wait=30s"
    with urllib.request.urlopen(url, timeout=40) as answer:
        answer.read()
    arrivals.append(time.perf_counter())


def consul_index(consul: str, service: str) -> int:
    with urllib.request.urlopen(f"http://{consul}/v1/health/service/{service}", timeout=5) as answer:
        return int(answer.headers["X-Consul-Index"])


def fan_out(address: str, consul: str) -> tuple[list[float], list[float]]:
    async def run() -> tuple[list[float], list[float]]:
        pushed, direct = [], []
        async with grpc.aio.insecure_channel(address) as registry_channel:
            registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
            channels = [grpc.aio.insecure_channel(address) for _ in range(10)]  # 10 streams a connection
            streams = [AdsStream(channels[i % 10], "xds-fan", f"fan-{i}") for i in range(STREAMS)]
            await asyncio.gather(*(s.first_with(lambda ports: True, 0.0) for s in streams))
            for n in range(CHANGES):
                instance_id = f"fan-{n}"
                index = await asyncio.to_thread(consul_index, consul, "xds-fan")
                arrivals: list[float] = []
                blocking = threading.Thread(target=consul_delivery, args=(consul, "xds-fan", index, arrivals))
                blocking.start()
                await asyncio.sleep(0.2)  # the blocking query is parked in Consul
                changed = time.perf_counter()
                await registry.Register(registry_pb2.RegisterRequest(  # a TTL check, passing from the start
                    service="xds-fan", instance_id=instance_id, address="127.0.0.1", port=free_port(),
                    check=ttl(60)), timeout=5)
                times = await asyncio.gather(*(s.first_with(lambda ports: bool(ports), changed) for s in streams))
                pushed += [t - changed for t in times]
                await asyncio.to_thread(blocking.join)
                direct += [t - changed for t in arrivals]
                gone = time.perf_counter()
                await registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance_id), timeout=5)
                await asyncio.gather(*(s.first_with(lambda ports: not ports, gone) for s in streams))
            for stream in streams:
                stream.close()
            for channel in channels:
                await channel.close()
        return pushed, direct

    return asyncio.run(run())


# --- 3. per call --------------------------------------------------------------------------------------------


def per_call(address: str) -> tuple[float, float, float]:
    """(plain µs, xds µs, median per-round ratio) for unary calls to one backend."""
    backend = Backend("per-call")
    try:
        with grpc.insecure_channel(address) as channel:
            registry_pb2_grpc.RegistryServiceStub(channel).Register(registry_pb2.RegisterRequest(
                service="xds-call", instance_id="per-call", address="127.0.0.1", port=backend.port,
                check=grpc_check(1000)), timeout=5)
        os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = bootstrap_json(address, "bench-per-call")
        plain = grpc.insecure_channel(f"127.0.0.1:{backend.port}").unary_unary("/xds.test.Echo/Who")
        xds = grpc.insecure_channel("xds:///xds-call").unary_unary("/xds.test.Echo/Who")
        wait_until(lambda: xds(b"", timeout=5, wait_for_ready=True) == b"per-call", timeout=30)
        for _ in range(300):
            plain(b"")
            xds(b"")
        times: dict[str, list[float]] = {"plain": [], "xds": []}
        for _ in range(ROUNDS):
            for name, call in (("plain", plain), ("xds", xds)):
                started = time.perf_counter()
                for _ in range(CALLS_PER_ROUND):
                    call(b"")
                times[name].append((time.perf_counter() - started) / CALLS_PER_ROUND * 1e6)
        ratio = statistics.median(x / p for x, p in zip(times["xds"], times["plain"], strict=True))
        return statistics.median(times["plain"]), statistics.median(times["xds"]), ratio
    finally:
        backend.stop()


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        consul = LocalConsul(data_dir=Path(tmp) / "consul").start()
        plane = ControlPlaneProcess(consul.http_addr).start()
        try:
            eds, watch = kill_to_removal(plane.address)
            pushed, direct = fan_out(plane.address, consul.http_addr)
            plain_us, xds_us, ratio = per_call(plane.address)
        finally:
            plane.kill()
            consul.destroy()
    ms = 1000.0
    print("xds benchmark (loopback; one control plane, one Consul agent)")
    print(f"  SIGKILL of an instance (gRPC check every 1 s) -> out of the endpoints, {KILLS} kills:")
    print(f"    EDS update on an ADS stream   p50 {statistics.median(eds) * ms:7.0f} ms   p99 "
          f"{percentile(eds, 99) * ms:7.0f} ms")
    print(f"    REMOVED on a Watch stream     p50 {statistics.median(watch) * ms:7.0f} ms   p99 "
          f"{percentile(watch, 99) * ms:7.0f} ms   (aim: EDS within a few ms of Watch)")
    print(f"  a registry change -> {STREAMS} ADS streams, {CHANGES} changes ({len(pushed)} deliveries):")
    print(f"    EDS update on each stream     p50 {statistics.median(pushed) * ms:7.1f} ms   p99 "
          f"{percentile(pushed, 99) * ms:7.1f} ms")
    print(f"    Consul's own blocking query   p50 {statistics.median(direct) * ms:7.1f} ms   p99 "
          f"{percentile(direct, 99) * ms:7.1f} ms   (the floor: the push adds one watch and the fan-out)")
    print(f"  per call, stock grpcio: plain channel {plain_us:.1f} µs, xds:/// channel {xds_us:.1f} µs: "
          f"{ratio:.3f}x (aim: about 1.0x, the same data path once resolved)")
    print(json.dumps({"eds_p50_ms": statistics.median(eds) * ms, "watch_p50_ms": statistics.median(watch) * ms,
                      "push_p99_ms": percentile(pushed, 99) * ms, "consul_p99_ms": percentile(direct, 99) * ms,
                      "per_call_ratio": ratio}))
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
