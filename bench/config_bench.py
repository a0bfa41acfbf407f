"""How fast does a config change reach its watchers, next to Consul's own blocking-query delay?

Standalone: starts its own Consul agent (in memory, loopback) and its own control plane, then measures in
the same run

  - SetConfig -> each of N concurrent WatchConfig streams receiving the new version;
  - the SetConfig call itself (until Consul has the write);
  - a Consul KV put -> a raw blocking query on that key returning (1 query, and N at once).

and prints p50 / p99 / max in milliseconds. Everything runs on this machine, so the figures include the
bench's own Python client work (decoding N messages on one event loop).

    .venv/bin/python bench/config_bench.py [--watchers 100] [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.config.wire import to_struct
from controlplane.consul.client import connect
from controlplane.consul.local_agent import LocalConsul, free_port
from controlplane.v1 import config_pb2, config_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bench-svc"
# A document of realistic size (about 5 KB as JSON); each round changes one value.
BODY = {f"setting_{i}": {"value": i, "hosts": ["a", "b", "c"], "label": "x" * 20} for i in range(50)}


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


class ControlPlane:
    """`controlplane serve` as a child process."""

    def __init__(self, consul_addr: str, log: Path) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--listen", self.address, "--consul", consul_addr],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("the control plane exited; see its log")
                with contextlib.suppress(grpc.RpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)
        raise TimeoutError("the control plane did not start serving")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


async def measure_delivery(address: str, watchers: int, rounds: int) -> tuple[list[float], list[float]]:
    """(SetConfig call durations, SetConfig -> delivery durations), in milliseconds."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(max(1, watchers // 10))]
    stubs = [config_pb2_grpc.ConfigServiceStub(channel) for channel in channels]
    writer = stubs[0]
    first = await writer.SetConfig(
        config_pb2.SetConfigRequest(service=SERVICE, content=to_struct({**BODY, "round": 0}), author="bench")
    )
    version = first.document.version
    arrivals: dict[int, list[float]] = {}
    synced = asyncio.Event()
    got_current = 0

    async def follow(stub: config_pb2_grpc.ConfigServiceStub) -> None:
        nonlocal got_current
        async for message in stub.WatchConfig(config_pb2.WatchConfigRequest(service=SERVICE, environment="prod")):
            arrivals.setdefault(message.document.version, []).append(time.perf_counter())
            if message.document.version == version:
                got_current += 1
                if got_current == watchers:
                    synced.set()

    tasks = [asyncio.create_task(follow(stubs[i % len(stubs)])) for i in range(watchers)]
    await asyncio.wait_for(synced.wait(), 30)
    acks: list[float] = []
    delays: list[float] = []
    for round_ in range(1, rounds + 1):
        started = time.perf_counter()
        reply = await writer.SetConfig(
            config_pb2.SetConfigRequest(
                service=SERVICE, content=to_struct({**BODY, "round": round_}), expected_version=version, author="bench"
            )
        )
        acks.append((time.perf_counter() - started) * 1000)
        version = reply.document.version
        deadline = time.monotonic() + 10
        while len(arrivals.get(version, ())) < watchers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"round {round_}: only {len(arrivals.get(version, ()))} of {watchers} delivered")
            await asyncio.sleep(0.001)
        delays += [(arrived - started) * 1000 for arrived in arrivals[version]]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return acks, delays


async def measure_consul(consul_addr: str, queries: int, rounds: int) -> list[float]:
    """KV put (of the same document) -> each of `queries` raw blocking queries on the key returning, in ms."""
    writer = connect(consul_addr, request_timeout=10)
    readers = [connect(consul_addr, request_timeout=70) for _ in range(max(1, queries // 10))]
    key = "bench/raw"
    await writer.kv.put(key, json.dumps({**BODY, "round": 0}))
    delays: list[float] = []
    for round_ in range(1, rounds + 1):
        index, _ = await writer.kv.get(key)
        returned: list[float] = []

        async def block(reader: object, index: str = index, returned: list[float] = returned) -> None:
            await reader.kv.get(key, index=index, wait="30s")  # type: ignore[attr-defined]
            returned.append(time.perf_counter())

        waiting = [asyncio.create_task(block(readers[i % len(readers)])) for i in range(queries)]
        await asyncio.sleep(0.05)  # let every query reach Consul and park
        started = time.perf_counter()
        await writer.kv.put(key, json.dumps({**BODY, "round": round_}))
        await asyncio.gather(*waiting)
        delays += [(t - started) * 1000 for t in returned]
    for client in (writer, *readers):
        await client.close()
    return delays


async def main(watchers: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="config-bench-") as tmp:
        agent = LocalConsul(data_dir=Path(tmp) / "consul", dev=True).start()
        plane = ControlPlane(agent.http_addr, Path(tmp) / "controlplane.log")
        try:
            await plane.ready()
            acks, delays = await measure_delivery(plane.address, watchers, rounds)
            raw_one = await measure_consul(agent.http_addr, 1, rounds)
            raw_many = await measure_consul(agent.http_addr, watchers, rounds)
        finally:
            plane.stop()
            agent.destroy()
    print(f"\nconfig delivery: {watchers} watchers, {rounds} rounds, ~5 KB document")
    print(f"{agent.version()}, dev agent on loopback; control plane and bench client on the same machine")
    baseline = statistics.median(raw_one)
    print(f"{'measure':<58}{'samples':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p50/raw':>9}")
    for name, samples in (
        ("SetConfig call (acknowledged after Consul has it)", acks),
        (f"SetConfig -> delivered, {watchers} WatchConfig streams", delays),
        ("Consul KV put -> raw blocking query returns (1 query)", raw_one),
        (f"Consul KV put -> raw blocking query returns ({watchers} queries)", raw_many),
    ):
        print(
            f"{name:<58}{len(samples):>8}{statistics.median(samples):>9.2f}"
            f"{percentile(samples, 99):>9.2f}{max(samples):>9.2f}{statistics.median(samples) / baseline:>8.1f}x"
        )
    print("p50/raw: p50 as a multiple of one raw blocking query's p50, measured in the same run")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=100, help="concurrent WatchConfig streams")
    parser.add_argument("--rounds", type=int, default=50, help="config changes measured")
    args = parser.parse_args()
    started = time.monotonic()
    asyncio.run(main(args.watchers, args.rounds))
    print(f"(bench took {time.monotonic() - started:.1f}s)")
