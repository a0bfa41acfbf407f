"""The metric families of one process, and their exposition over HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controlplane.interceptors.breaker import BreakerRegistry, State, StateChange
from controlplane.interceptors.bulkhead import BulkheadRegistry
from controlplane.text import tcp_port

__all__ = ["Metrics"]

log = logging.getLogger(__name__)

# Seconds: from well under a loopback call to a slow Consul write or a long deadline.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
PAUSE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
MAX_OPERATIONS = 200  # distinct Consul operation labels; beyond this, "other" (labels must stay bounded)
MAX_CACHED_DESCRIPTIONS = 10_000  # request descriptions remembered with their label (the rest are parsed again)


class Metrics:
    """The metric families of one process (see the package docstring)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.server_started = Counter("grpc_server_started_total", "RPCs started on the server.", RPC_LABELS,
                                      registry=r)
        self.server_handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by status.",
                                      (*RPC_LABELS, "grpc_code"), registry=r)
        self.server_seconds = Histogram("grpc_server_handling_seconds", "Time to handle an RPC, to its status.",
                                        RPC_LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.server_in_flight = Gauge("grpc_server_in_flight", "RPCs being handled now (open streams included).",
                                      RPC_LABELS, registry=r)
        self.client_started = Counter("grpc_client_started_total", "RPCs started by clients.", RPC_LABELS,
                                      registry=r)
        self.client_handled = Counter("grpc_client_handled_total",
                                      "RPCs completed by clients, by status (local refusals included).",
                                      (*RPC_LABELS, "grpc_code"), registry=r)
        self.client_seconds = Histogram("grpc_client_handling_seconds", "Time from start to status of an RPC.",
                                        RPC_LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.client_in_flight = Gauge("grpc_client_in_flight", "RPCs in flight from this process.", RPC_LABELS,
                                      registry=r)
        self.breaker_transitions = Counter("controlplane_breaker_transitions_total",
                                           "Circuit breaker state changes.", ("breaker", "from_state", "to_state"),
                                           registry=r)
        self.consul_seconds = Histogram("controlplane_consul_request_seconds",
                                        "Consul HTTP requests, by operation and outcome.", ("operation", "outcome"),
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.sagas_started = Counter("controlplane_sagas_started_total", "Sagas started on this replica.",
                                     ("definition",), registry=r)
        self.sagas_ended = Counter("controlplane_sagas_ended_total", "Sagas this replica drove to an end, by status.",
                                   ("definition", "status"), registry=r)
        self.saga_steps = Counter("controlplane_saga_step_attempts_total",
                                  "Saga step attempts (actions and compensations), by final status of the call.",
                                  ("definition", "step", "kind", "grpc_code"), registry=r)
        self.saga_retries = Counter("controlplane_saga_step_retries_total",
                                    "Saga step attempts after the first (retries).", ("definition", "step", "kind"),
                                    registry=r)
        self.saga_step_seconds = Histogram("controlplane_saga_step_seconds", "Time of one saga step attempt.",
                                           ("definition", "step", "kind"), buckets=LATENCY_BUCKETS, registry=r)
        self.gc_pauses = Histogram("controlplane_gc_pause_seconds", "Garbage-collector pauses, by generation.",
                                   ("generation",), buckets=PAUSE_BUCKETS, registry=r)
        self.loop_lag = Histogram("controlplane_event_loop_lag_seconds",
                                  "How late the event loop ran a timer that was due (a stall's length).",
                                  buckets=PAUSE_BUCKETS, registry=r)
        self._operations: dict[str, str] = {}  # a request's description -> its operation label
        self._labels: set[str] = set()  # the operation labels given out so far
        self._lock = threading.Lock()
        self._http: Any = None
        self._gc_started = 0.0

    # --- breakers and bulkheads ---

    def watch_breakers(self, breakers: BreakerRegistry) -> None:
        """Export the state, refusals and transitions of every breaker of `breakers`, present and future."""
        self.registry.register(_BreakerCollector(breakers))
        breakers.add_listener(self._transition)

    def watch_bulkheads(self, bulkheads: BulkheadRegistry) -> None:
        """Export the slots in use, waiting callers and refusals of every bulkhead of `bulkheads`."""
        self.registry.register(_BulkheadCollector(bulkheads))

    def _transition(self, change: StateChange) -> None:
        self.breaker_transitions.labels(change.breaker, change.old.value, change.new.value).inc()

    def watch_xds(self, ads: Any) -> None:
        """Export the ADS streams of `ads` (an AggregatedDiscovery) and its responses, ACKs and NACKs."""
        from controlplane.metrics.xds import XdsCollector

        self.registry.register(XdsCollector(ads))

    # --- sagas ---

    def watch_sagas(self, driving: Callable[[], int]) -> SagaMetrics:
        """An observer for the orchestrator (`Orchestrator.observer`), and a gauge of the sagas it drives now."""
        self.registry.register(_GaugeOf("controlplane_sagas_driving", "Sagas this replica drives now.", driving))
        return SagaMetrics(self)

    # --- the runtime: where a latency tail comes from ---

    def watch_gc(self) -> None:
        """Time every garbage-collector pause of this process (gc.callbacks)."""
        gc.callbacks.append(self._gc_phase)

    def _gc_phase(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._gc_started)

    async def watch_event_loop(self, interval: float = 0.01) -> None:
        """Run forever on the loop to watch: every `interval` seconds, record how late it woke (a stall of the
        loop by CPU-bound work, a blocking call, or the garbage collector delays every request it serves)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    # --- Consul ---

    def watch_consul_watches(self) -> None:
        """Export how many Consul blocking-query watches each kind of watch set runs now."""
        self.registry.register(_WatchSetCollector())

    def observe_consul(self, what: str, outcome: str, seconds: float) -> None:
        """One Consul request (`consul_call`'s `what`, reduced to its operation: no keys, ids or names)."""
        operation = self._operations.get(what)
        if operation is None:
            operation = self._operation_label(what)
        self.consul_seconds.labels(operation, outcome).observe(seconds)

    def _operation_label(self, what: str) -> str:
        """The label of a `what` not seen before: most name a saga or a service, so this runs often and
        costs the same however many labels and descriptions there are."""
        operation = _operation(what)
        with self._lock:
            if operation not in self._labels:
                if len(self._labels) >= MAX_OPERATIONS:
                    operation = "other"
                else:
                    self._labels.add(operation)
            if len(self._operations) < MAX_CACHED_DESCRIPTIONS:
                self._operations[what] = operation
        return operation

    # --- exposition ---

    def serve(self, listen: str) -> int:
        """Serve the Prometheus text format at http://LISTEN/metrics (any path); returns the port.
        OSError when the address cannot be bound."""
        host, _, port = listen.rpartition(":")
        number = tcp_port(port, lowest=0)
        if number is None:
            raise ValueError(f"metrics address must be host:port with a port 0..65535, got {listen[:100]!r}")
        server, _thread = start_http_server(number, addr=host.strip("[]") or "127.0.0.1", registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop serving (the families keep their values)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


_WORD = re.compile(r"[a-z]+")


def _operation(what: str) -> str:
    """ "head of saga-3f2a" -> "head"; "write config of orders" -> "write config"; "list saga locks" as is."""
    words = []
    for word in what.split():
        if word == "of" or not _WORD.fullmatch(word):
            break
        words.append(word)
    return " ".join(words) or "other"


class SagaMetrics:
    """`controlplane.saga.orchestrator.SagaObserver` recording into the saga families."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def saga_started(self, definition: str) -> None:
        self._m.sagas_started.labels(definition).inc()

    def saga_ended(self, definition: str, status: str) -> None:
        self._m.sagas_ended.labels(definition, status).inc()

    def step_attempted(self, definition: str, step: str, compensation: bool, attempt: int, code: str,
                       seconds: float) -> None:
        kind = "compensation" if compensation else "action"
        self._m.saga_steps.labels(definition, step, kind, code).inc()
        self._m.saga_step_seconds.labels(definition, step, kind).observe(seconds)
        if attempt > 1:
            self._m.saga_retries.labels(definition, step, kind).inc()


class _GaugeOf(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[Any]:
        gauge = GaugeMetricFamily(self._name, self._documentation)
        gauge.add_metric((), float(self._read()))
        yield gauge

    def describe(self) -> Iterable[Any]:
        return []


class _WatchSetCollector(Collector):
    def collect(self) -> Iterator[Any]:
        from controlplane.watch.watch_set import LIVE

        gauge = GaugeMetricFamily("controlplane_consul_watches", "Consul blocking-query watches running now.",
                                  labels=("what",))
        counts: dict[str, int] = {}
        for watch_set in list(LIVE):
            counts[watch_set.what] = counts.get(watch_set.what, 0) + len(watch_set)
        for what, count in sorted(counts.items()):
            gauge.add_metric((what,), count)
        yield gauge

    def describe(self) -> Iterable[Any]:
        return []


class _BreakerCollector(Collector):
    def __init__(self, breakers: BreakerRegistry) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[Any]:
        state = GaugeMetricFamily("controlplane_breaker_state", "1 for a breaker's current state, 0 for the others.",
                                  labels=("breaker", "state"))
        refused = CounterMetricFamily("controlplane_breaker_not_permitted", "Calls a breaker refused.",
                                      labels=("breaker",))
        failure_rate = GaugeMetricFamily("controlplane_breaker_failure_rate",
                                         "Failure rate in the breaker's window (0..1).", labels=("breaker",))
        for name, snapshot in self._breakers.snapshot().items():
            for candidate in State:
                state.add_metric((name, candidate.value), 1.0 if snapshot.state is candidate else 0.0)
            refused.add_metric((name,), snapshot.rejected)
            failure_rate.add_metric((name,), snapshot.failure_rate)
        yield from (state, refused, failure_rate)

    def describe(self) -> Iterable[Any]:
        return []


class _BulkheadCollector(Collector):
    def __init__(self, bulkheads: BulkheadRegistry) -> None:
        self._bulkheads = bulkheads

    def collect(self) -> Iterator[Any]:
        in_use = GaugeMetricFamily("controlplane_bulkhead_in_use", "Slots held by calls in flight.",
                                   labels=("bulkhead",))
        waiting = GaugeMetricFamily("controlplane_bulkhead_waiting", "Calls waiting for a slot.", labels=("bulkhead",))
        rejected = CounterMetricFamily("controlplane_bulkhead_rejected", "Calls refused for want of a slot.",
                                       labels=("bulkhead",))
        for name, snapshot in self._bulkheads.snapshot().items():
            in_use.add_metric((name,), snapshot.in_flight)
            waiting.add_metric((name,), snapshot.waiting)
            rejected.add_metric((name,), snapshot.rejected)
        yield from (in_use, waiting, rejected)

    def describe(self) -> Iterable[Any]:
        return []
