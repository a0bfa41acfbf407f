"""Watch: the current set first, then every change as it happens."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import pytest

from controlplane.v1 import registry_pb2
from tests.helpers import HealthServer, grpc_check, ttl

E = registry_pb2


class WatchReader:
    """Reads a Watch stream on a thread so a test can wait for events with a timeout."""

    def __init__(self, call: Iterator[registry_pb2.WatchResponse]) -> None:
        self.call = call
        self.events: queue.Queue[registry_pb2.WatchResponse] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError:
            pass

    def next(self, timeout: float = 10.0) -> registry_pb2.WatchResponse:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s") from None

    def next_of(self, kind: int, timeout: float = 10.0) -> registry_pb2.WatchResponse:
        """The next event of one type, skipping others (e.g. staleness notices)."""
        while True:
            event = self.next(timeout)
            if event.type == kind:
                return event

    def close(self) -> None:
        self.call.cancel()  # type: ignore[attr-defined]
        self.thread.join(5)


@pytest.fixture
def watch(registry):
    readers: list[WatchReader] = []

    def _watch(**fields: object) -> WatchReader:
        reader = WatchReader(registry.Watch(registry_pb2.WatchRequest(**fields), timeout=60))
        readers.append(reader)
        return reader

    yield _watch
    for reader in readers:
        reader.close()


def test_watch_sends_the_current_set_first(register, watch, service_name):
    register(service=service_name, instance_id=f"{service_name}-1", address="127.0.0.1", port=9600, check=ttl())
    first = watch(service=service_name).next()
    assert first.type == E.WATCH_EVENT_TYPE_SNAPSHOT
    assert [i.instance_id for i in first.instances] == [f"{service_name}-1"]
    assert not first.stale


def test_watch_reports_added_and_removed_instances(register, registry, watch, service_name):
    reader = watch(service=service_name)
    assert reader.next().instances == []
    instance = register(service=service_name, address="127.0.0.1", port=9601, check=ttl())
    added = reader.next_of(E.WATCH_EVENT_TYPE_ADDED)
    assert added.instance.instance_id == instance.instance_id
    assert [i.instance_id for i in added.instances] == [instance.instance_id]
    registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5)
    removed = reader.next_of(E.WATCH_EVENT_TYPE_REMOVED)
    assert removed.instance.instance_id == instance.instance_id
    assert removed.instances == []


def test_watch_of_passing_instances_reports_an_unhealthy_one_as_removed(register, watch, service_name):
    server = HealthServer()
    try:
        register(service=service_name, address="127.0.0.1", port=server.port, check=grpc_check())
        reader = watch(service=service_name)
        first = reader.next()
        if not first.instances:  # the first check may not have run yet
            reader.next_of(E.WATCH_EVENT_TYPE_ADDED)
        server.set_serving(False)
        removed = reader.next_of(E.WATCH_EVENT_TYPE_REMOVED)
        assert removed.instance.health == E.HEALTH_STATUS_CRITICAL
    finally:
        server.stop()


def test_watch_including_unhealthy_reports_health_changes(register, watch, service_name):
    server = HealthServer()
    try:
        register(service=service_name, address="127.0.0.1", port=server.port, check=grpc_check())
        reader = watch(service=service_name, include_unhealthy=True)
        first = reader.next()
        if first.instances[0].health != E.HEALTH_STATUS_PASSING:  # Consul's first check has not run yet
            assert reader.next_of(E.WATCH_EVENT_TYPE_HEALTH_CHANGED).instance.health == E.HEALTH_STATUS_PASSING
        server.set_serving(False)
        changed = reader.next_of(E.WATCH_EVENT_TYPE_HEALTH_CHANGED)
        assert changed.instance.health == E.HEALTH_STATUS_CRITICAL
        assert [i.health for i in changed.instances] == [E.HEALTH_STATUS_CRITICAL]
        server.set_serving(True)
        assert reader.next_of(E.WATCH_EVENT_TYPE_HEALTH_CHANGED).instance.health == E.HEALTH_STATUS_PASSING
    finally:
        server.stop()


def test_watch_reports_a_changed_registration_as_updated(register, watch, service_name):
    register(
        service=service_name,
        instance_id=f"{service_name}-u",
        address="127.0.0.1",
        port=9602,
        version="1",
        check=ttl(),
    )
    reader = watch(service=service_name)
    reader.next()
    register(
        service=service_name,
        instance_id=f"{service_name}-u",
        address="127.0.0.1",
        port=9602,
        version="2",
        check=ttl(),
    )
    assert reader.next_of(E.WATCH_EVENT_TYPE_UPDATED).instance.version == "2"


def test_watch_applies_the_filter(register, watch, service_name):
    reader = watch(service=service_name, filter=registry_pb2.InstanceFilter(tags=["canary"]))
    reader.next()
    register(service=service_name, address="127.0.0.1", port=9603, tags=["stable"], check=ttl())
    canary = register(service=service_name, address="127.0.0.1", port=9604, tags=["canary"], check=ttl())
    added = reader.next_of(E.WATCH_EVENT_TYPE_ADDED)
    assert added.instance.instance_id == canary.instance_id
    assert [i.instance_id for i in added.instances] == [canary.instance_id]


def test_watch_with_a_bad_service_name_is_invalid(registry):
    with pytest.raises(grpc.RpcError) as failure:
        next(registry.Watch(registry_pb2.WatchRequest(service="NOT VALID"), timeout=5))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
