"""The generative suite's stack (as `make up` starts it) and the tally it prints at the end.

FUZZ_EXAMPLES sets the examples per RPC (a bounded count in `make test`, thousands in `make fuzz`);
FUZZ_REPORT names a JSON file the tally is also written to.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.stack import Stack, running_stack

TALLY: Counter[str] = Counter()
PROBLEMS: list[str] = []


MEASURES: dict[str, object] = {}


def rss_kib(stack: Stack) -> dict[str, int]:
    """Resident memory of each process of the stack, KiB (from /proc), by its pid file's name."""
    found = {}
    for pid_file in sorted(Path(stack.dir, "pids").glob("*.pid")):
        for line in Path(f"/proc/{int(pid_file.read_text())}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                found[pid_file.stem] = int(line.split()[1])
    return found


class DiscoverProbe:
    """A Discover every 20 ms on its own channel while the fuzz runs: what other clients see (seconds)."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        started = time.monotonic()
        self._stub.Discover(registry_pb2.DiscoverRequest(service="order"), timeout=30)
        return time.monotonic() - started

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.latencies.append(self.sample())

    def start(self) -> DiscoverProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._channel.close()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("fuzz-stack")) as running:
        probe = DiscoverProbe(running.control_plane)
        for _ in range(20):  # warm the cache and the connection
            probe.sample()
        idle = [probe.sample() for _ in range(200)]
        MEASURES["rss_before_kib"] = rss_kib(running)
        probe.start()
        yield running
        probe.stop()
        MEASURES["rss_after_kib"] = rss_kib(running)
        MEASURES["discover_idle_p99_ms"] = round(p99(idle) * 1000, 2)
        MEASURES["discover_busy_p99_ms"] = round(p99(probe.latencies) * 1000, 2)
        MEASURES["discover_busy_worst_ms"] = round(max(probe.latencies, default=0) * 1000, 2)
        MEASURES["discover_busy_samples"] = len(probe.latencies)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    codes = {k: v for k, v in sorted(TALLY.items()) if not k.startswith("_")}
    terminalreporter.write_line(f"fuzz: {sum(codes.values())} requests; answers by code: {codes}; "
                                f"rejected writes checked unchanged: {TALLY['_checked']}, "
                                f"left unchecked while a saga ran: {TALLY['_unchecked']}")
    terminalreporter.write_line(f"fuzz: {MEASURES}")
    report = os.environ.get("FUZZ_REPORT")
    if report:
        with open(report, "w") as out:
            json.dump({"codes": codes, "checked": TALLY["_checked"], "unchecked": TALLY["_unchecked"],
                       "problems": PROBLEMS[:50], **MEASURES}, out, indent=2)
