"""Two control-plane replicas share one Consul: one drives each saga; the other takes over when it dies."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import json_format

from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess, wait_until
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, wait_discoverable, wait_ended
from tests.saga.test_crash_recovery import saga_args

LIVENESS_TTL = 1.0


@pytest.fixture
def replicas(consul: LocalConsul, tmp_path: Path) -> Iterator[tuple[ControlPlaneProcess, ControlPlaneProcess, str]]:
    prefix = f"test-replicas-{uuid.uuid4().hex[:8]}/"
    a, b = (ControlPlaneProcess(consul.http_addr, log_path=tmp_path / f"{name}.log",
                                extra_args=saga_args(prefix, f"replica-{name}"))
            for name in ("a", "b"))
    try:
        yield a.start(), b.start(), prefix
    finally:
        a.kill()
        b.kill()


def attempt_replicas(consul: LocalConsul, prefix: str, saga_id: str) -> list[str]:
    """Which replica started each attempt, read from the saga's events in Consul."""
    url = f"http://{consul.http_addr}/v1/kv/{prefix}events/{saga_id}/?recurse"
    with urllib.request.urlopen(url) as response:
        entries = json.loads(response.read())

    events = [json.loads(base64.b64decode(e["Value"])) for e in sorted(entries, key=lambda e: e["Key"])]
    return [e["data"]["replica"] for e in events if e["type"] in ("step_started", "compensation_started")]


def test_surviving_replica_takes_over_the_sagas_of_a_killed_one(
    replicas: tuple[ControlPlaneProcess, ControlPlaneProcess, str], consul: LocalConsul,
    control_plane: ControlPlaneProcess
) -> None:
    a, b, prefix = replicas
    participants = Participants(control_plane.address, slow_seconds=0.3)
    try:
        with grpc.insecure_channel(a.address) as on_a, grpc.insecure_channel(b.address) as on_b:
            wait_discoverable(on_b, participants.services)
            stub_a, stub_b = saga_pb2_grpc.SagaServiceStub(on_a), saga_pb2_grpc.SagaServiceStub(on_b)
            name = f"takeover-{uuid.uuid4().hex[:6]}"
            stub_a.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
                definition=order_definition(name, participants.services)), timeout=10)
            orders = {f"slow-{i}-{uuid.uuid4().hex[:6]}": i for i in range(8)}
            ids = {order: start(stub_a, name, order_input(order)).saga.saga_id for order in orders}

            a.kill()  # SIGKILL while every saga is in its first, slow step
            killed_at = time.monotonic()
            ended = {order: wait_ended(stub_b, saga_id, timeout=30) for order, saga_id in ids.items()}
            took = time.monotonic() - killed_at

        assert all(s.status == saga_pb2.SAGA_STATUS_COMPLETED for s in ended.values())
        for saga_id in ids.values():
            drivers = attempt_replicas(consul, prefix, saga_id)
            assert drivers[0] == "replica-a" and drivers[-1] == "replica-b", drivers
        applied = participants.applied()
        assert all(applied[(op, order)] == 1 for order in orders for op in ("reserve", "charge", "confirm"))
        # Detection takes the liveness TTL; three slow steps take about a second more.
        assert took < LIVENESS_TTL + 8, took
    finally:
        participants.stop()


def test_definitions_file_is_registered_when_the_control_plane_starts(
    consul: LocalConsul, tmp_path: Path, participants: Participants
) -> None:
    path = tmp_path / "sagas.yaml"
    name = f"from-file-{uuid.uuid4().hex[:6]}"
    raw = json_format.MessageToDict(order_definition(name, participants.services))
    path.write_text(yaml.safe_dump({"definitions": [raw]}))
    plane = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log",
                                extra_args=[*saga_args(f"test-file-{uuid.uuid4().hex[:8]}/", "file-replica"),
                                            "--saga-definitions", str(path)]).start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            stub = saga_pb2_grpc.SagaServiceStub(channel)

            def registered() -> saga_pb2.SagaDefinition | None:
                found = {d.name: d for d in stub.ListDefinitions(saga_pb2.ListDefinitionsRequest()).definitions}
                return found.get(name)

            definition = wait_until(registered, 10, what="the file's definition")
            saga = wait_ended(stub, start(stub, name, order_input(f"file-{uuid.uuid4().hex[:6]}")).saga.saga_id)
    finally:
        plane.kill()

    assert definition.version == 1 and len(definition.steps) == 3
    assert saga.status == saga_pb2.SAGA_STATUS_COMPLETED
