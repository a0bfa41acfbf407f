"""Prometheus metrics: exact counts after known traffic, breakers and bulkheads, the control plane's endpoint."""

from __future__ import annotations

import contextlib
import urllib.request
from concurrent import futures

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.interceptors import (
    BreakerPolicy,
    BreakerRegistry,
    BulkheadPolicy,
    BulkheadRegistry,
    ClientPolicy,
    client_interceptors,
    server_interceptors,
)
from controlplane.metrics import Metrics
from controlplane.metrics.families import MAX_CACHED_DESCRIPTIONS, MAX_OPERATIONS
from controlplane.v1 import registry_pb2, registry_pb2_grpc, saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess, free_port, wait_until
from tests.interceptors.servers import SERVICE, UNARY, Behavior, dead_address, sync_channel, sync_served

UNARY_LABELS = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Unary"}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_served_and_made_calls_are_counted_by_code_and_timed() -> None:
    server_side, client_side = Metrics(), Metrics()
    behavior = Behavior()
    behavior.fail_first = [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND]
    with sync_served(behavior, client_interceptors(tracing=False, metrics=client_side),
                     server_interceptors(tracing=False, metrics=server_side)) as channel:
        unary = channel.unary_unary(UNARY)
        for _ in range(5):
            with contextlib.suppress(grpc.RpcError):
                unary(b"x", timeout=5)
    for metrics, side in ((server_side, "server"), (client_side, "client")):
        assert value(metrics, f"grpc_{side}_started_total", **UNARY_LABELS) == 5
        assert value(metrics, f"grpc_{side}_handled_total", **UNARY_LABELS, grpc_code="OK") == 3
        assert value(metrics, f"grpc_{side}_handled_total", **UNARY_LABELS, grpc_code="NOT_FOUND") == 2
        assert value(metrics, f"grpc_{side}_handling_seconds_count", **UNARY_LABELS) == 5
        assert value(metrics, f"grpc_{side}_in_flight", **UNARY_LABELS) == 0


def test_breaker_state_refusals_and_transitions_are_exported() -> None:
    metrics = Metrics()
    breakers = BreakerRegistry(BreakerPolicy(minimum_calls=1, window_size=1, wait_in_open=3600))
    metrics.watch_breakers(breakers)
    channel = sync_channel(dead_address(), client_interceptors(tracing=False, breakers=breakers, metrics=metrics))
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(UNARY)(b"x", timeout=2)
    assert value(metrics, "controlplane_breaker_state", breaker=SERVICE, state="open") == 1
    assert value(metrics, "controlplane_breaker_state", breaker=SERVICE, state="closed") == 0
    assert value(metrics, "controlplane_breaker_not_permitted_total", breaker=SERVICE) == 2
    assert value(metrics, "controlplane_breaker_transitions_total", breaker=SERVICE, from_state="closed",
                 to_state="open") == 1
    assert value(metrics, "grpc_client_handled_total", **UNARY_LABELS, grpc_code="UNAVAILABLE") == 3


def test_bulkhead_slots_and_refusals_are_exported() -> None:
    import threading

    behavior = Behavior()
    metrics = Metrics()
    bulkheads = BulkheadRegistry(BulkheadPolicy(max_concurrent=1))
    metrics.watch_bulkheads(bulkheads)
    behavior.gate = threading.Event()
    interceptors = client_interceptors(ClientPolicy(), tracing=False, bulkheads=bulkheads, metrics=metrics)
    with sync_served(behavior, interceptors) as channel, futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(channel.unary_unary(UNARY), b"x", timeout=10)
        behavior.wait_in_flight(1)
        assert value(metrics, "controlplane_bulkhead_in_use", bulkhead=SERVICE) == 1
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(UNARY)(b"y", timeout=10)
        behavior.gate.set()
        held.result(10)
    assert value(metrics, "controlplane_bulkhead_rejected_total", bulkhead=SERVICE) == 1
    assert value(metrics, "controlplane_bulkhead_in_use", bulkhead=SERVICE) == 0


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_the_control_plane_serves_its_metrics_in_prometheus_format(consul, tmp_path) -> None:
    port = free_port()
    plane = ControlPlaneProcess(consul.http_addr, extra_args=["--metrics-listen", f"127.0.0.1:{port}"],
                                log_path=tmp_path / "cp.log").start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            for _ in range(7):
                stub.Discover(registry_pb2.DiscoverRequest(service="metrics-probe"), timeout=5)
        families = wait_until(lambda: scrape(port), what="the metrics endpoint")
        discovers = [s for s in families["grpc_server_handled"] if s.labels["grpc_method"] == "Discover"]
        assert [(s.labels["grpc_code"], s.value) for s in discovers] == [("OK", 7.0)]
        probes = [s for s in families["controlplane_consul_request_seconds"]
                  if s.name.endswith("_count") and s.labels["operation"] == "probe" and s.labels["outcome"] == "ok"]
        assert probes and probes[0].value > 0
        assert "controlplane_breaker_state" in families  # the saga's participant breakers, none used yet
        lag = [s.value for s in families["controlplane_event_loop_lag_seconds"] if s.name.endswith("_count")]
        assert lag and lag[0] > 0  # the loop watcher has been measuring since start-up
        assert "controlplane_gc_pause_seconds" in families
        with grpc.insecure_channel(plane.address) as channel:
            watch = registry_pb2_grpc.RegistryServiceStub(channel).Watch(
                registry_pb2.WatchRequest(service="metrics-probe"), timeout=30)
            next(watch)  # the stream is open and its Consul watch runs

            def watching() -> bool:
                now = scrape(port)
                streams = [s.value for s in now["grpc_server_in_flight"] if s.labels["grpc_method"] == "Watch"]
                watches = [s.value for s in now["controlplane_consul_watches"] if s.labels["what"] == "instances"]
                return streams == [1.0] and bool(watches) and watches[0] >= 1

            wait_until(watching, what="the open Watch stream and its Consul watch in the metrics")
            watch.cancel()
    finally:
        plane.kill()


def test_sagas_and_their_steps_are_counted_and_timed(consul, tmp_path) -> None:
    from tests.saga.participants import Participants
    from tests.saga.sagas import order_definition, order_input, start, wait_discoverable, wait_ended

    port = free_port()
    plane = ControlPlaneProcess(consul.http_addr, extra_args=["--metrics-listen", f"127.0.0.1:{port}"],
                                log_path=tmp_path / "cp.log").start()
    participants = Participants(plane.address, slow_seconds=0.4)
    try:
        with grpc.insecure_channel(plane.address) as channel:
            wait_discoverable(channel, participants.services)
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = "metered-order"
            stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
                definition=order_definition(name, participants.services)), timeout=10)
            for _ in range(2):
                saga_id = start(stub, name, order_input(f"o-{free_port()}")).saga.saga_id
                wait_ended(stub, saga_id)
        families = scrape(port)

        def sample(family: str, **labels: str) -> float:
            return sum(s.value for s in families[family] if all(s.labels.get(k) == v for k, v in labels.items())
                       and not s.name.endswith(("_created", "_bucket", "_sum")))

        assert sample("controlplane_sagas_started", definition=name) == 2
        assert sample("controlplane_sagas_ended", definition=name, status="completed") == 2
        for step in ("reserve", "charge", "confirm"):
            assert sample("controlplane_saga_step_attempts", definition=name, step=step, kind="action",
                          grpc_code="OK") == 2
        assert sample("controlplane_saga_step_seconds", definition=name, step="charge", kind="action") == 2
        assert sample("controlplane_sagas_driving") == 0
    finally:
        participants.stop()
        plane.kill()


@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_a_metrics_address_that_is_not_host_port_is_refused_clearly(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        Metrics().serve(listen)


def test_consul_requests_are_labelled_by_operation_without_ids_and_the_labels_stay_bounded() -> None:
    metrics = Metrics()
    for n in range(MAX_CACHED_DESCRIPTIONS + 50):  # past the descriptions remembered: still labelled
        metrics.observe_consul(f"head of saga-{n}", "ok", 0.001)
    assert value(metrics, "controlplane_consul_request_seconds_count", operation="head", outcome="ok") == (
        MAX_CACHED_DESCRIPTIONS + 50)
    for n in range(MAX_OPERATIONS + 5):  # as many distinct operations as a bug could make
        metrics.observe_consul(f"op{chr(97 + n % 26)}{chr(97 + n // 26)} of x", "ok", 0.001)
    operations = {s.labels["operation"] for family in metrics.registry.collect()
                  if family.name == "controlplane_consul_request_seconds" for s in family.samples}
    assert len(operations) == MAX_OPERATIONS + 1  # the first MAX_OPERATIONS, and "other" for the rest
    assert "other" in operations and "head" in operations
    assert value(metrics, "controlplane_consul_request_seconds_count", operation="other", outcome="ok") == 6
