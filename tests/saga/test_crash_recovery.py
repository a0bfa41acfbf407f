"""Kill the control plane with SIGKILL while sagas run: every saga still ends, no step applies twice."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, wait_discoverable, wait_ended

SAGAS = 60
KILLS = 4


def saga_args(prefix: str, replica: str) -> list[str]:
    """Fast saga timings: a silent replica loses its sagas after 1 s."""
    return ["--saga-kv-prefix", prefix, "--saga-replica-id", replica, "--saga-liveness-ttl", "1",
            "--saga-takeover-interval", "2", "--saga-retry-max", "0.2"]


@pytest.fixture
def crashing_plane(consul: LocalConsul, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    plane = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "controlplane.log",
                                extra_args=saga_args(f"test-crash-{uuid.uuid4().hex[:8]}/", "crash-replica"))
    yield plane.start()
    plane.kill()


def test_sagas_survive_sigkill_of_the_control_plane_without_double_effects(
    crashing_plane: ControlPlaneProcess, control_plane: ControlPlaneProcess
) -> None:
    participants = Participants(control_plane.address, jitter=0.1)
    try:
        with grpc.insecure_channel(crashing_plane.address) as channel:
            wait_discoverable(channel, participants.services)
        run_crash_scenario(crashing_plane, participants)
    finally:
        participants.stop()


def run_crash_scenario(plane: ControlPlaneProcess, participants: Participants) -> None:
    rng = random.Random(7)
    name = f"crash-{uuid.uuid4().hex[:6]}"
    orders = {f"saga-{i:03d}-{uuid.uuid4().hex[:6]}": (f"o{i:03d}-{uuid.uuid4().hex[:6]}", i % 4 == 3)
              for i in range(SAGAS)}
    with grpc.insecure_channel(plane.address) as channel:
        stub = saga_pb2_grpc.SagaServiceStub(channel)
        stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
            definition=order_definition(name, participants.services)), timeout=10)

        starter = threading.Thread(target=start_all, args=(stub, name, orders), daemon=True)
        starter.start()
        for _ in range(KILLS):  # SIGKILL at random points while sagas start and run
            time.sleep(rng.uniform(0.15, 0.6))
            plane.kill()
            plane.start()
        starter.join(60)
        assert not starter.is_alive(), "could not start every saga"

        ended = {saga_id: wait_ended(stub, saga_id, timeout=60) for saga_id in orders}

    applied = participants.applied()
    for saga_id, (order, declined) in orders.items():
        saga = ended[saga_id]
        expected = saga_pb2.SAGA_STATUS_COMPENSATED if declined else saga_pb2.SAGA_STATUS_COMPLETED
        assert saga.status == expected, (saga_id, saga.errors)
        effects = {op: applied[(op, order)] for op in ("reserve", "charge", "confirm", "release", "refund")}
        if declined:
            assert effects == {"reserve": 1, "charge": 0, "confirm": 0, "release": 1, "refund": 0}, saga_id
        else:
            assert effects == {"reserve": 1, "charge": 1, "confirm": 1, "release": 0, "refund": 0}, saga_id
    assert max(applied.values()) == 1
    # The kills did land mid-saga: some calls' outcomes were never recorded and were sent again.
    resent = [a for saga in ended.values() for step in saga.steps for a in step.attempts if a.code == "UNKNOWN"]
    assert resent


def start_all(stub: saga_pb2_grpc.SagaServiceStub, name: str, orders: dict[str, tuple[str, bool]]) -> None:
    """Start each saga, retrying with the same id while the control plane is down (idempotent start)."""
    for saga_id, (order, declined) in orders.items():
        saga_input = order_input(order, amount_cents=500_000 if declined else 1500)
        while True:
            try:
                start(stub, name, saga_input, saga_id=saga_id)
                break
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                time.sleep(0.05)
        time.sleep(0.04)
