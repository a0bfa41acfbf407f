"""A replica's scan for sagas it holds but does not drive must not adopt a saga its StartSaga is recording.

The scan lists the saga locks; a lock taken by a StartSaga whose append has reached Consul but whose
driver is not spawned yet looks like "held here, not driven". Adopting it would start a second
attempt of the first step and mark the first one's outcome unknown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, wait_discoverable, wait_ended

SAGAS = 80
STARTERS = 8  # concurrent StartSaga calls: more of them in flight while the scan reads the locks


@pytest.fixture
def scanning_plane(consul: LocalConsul, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    """A control plane whose takeover scan runs back to back, so it overlaps every StartSaga."""
    plane = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "controlplane.log", extra_args=[
        "--saga-kv-prefix", f"test-scan-{uuid.uuid4().hex[:8]}/", "--saga-takeover-interval", "0.001"])
    yield plane.start()
    plane.kill()


def test_a_saga_being_started_is_driven_once_by_its_start_not_adopted_by_the_scan(
    scanning_plane: ControlPlaneProcess, control_plane: ControlPlaneProcess
) -> None:
    participants = Participants(control_plane.address)
    try:
        with grpc.insecure_channel(scanning_plane.address) as channel:
            wait_discoverable(channel, participants.services)
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = f"scan-{uuid.uuid4().hex[:6]}"
            stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
                definition=order_definition(name, participants.services)), timeout=10)
            with ThreadPoolExecutor(STARTERS) as pool:
                ids = list(pool.map(lambda i: start(stub, name, order_input(f"scan-{i}-{uuid.uuid4().hex[:6]}"))
                                    .saga.saga_id, range(SAGAS)))
            ended = [wait_ended(stub, saga_id) for saga_id in ids]
    finally:
        participants.stop()

    for saga in ended:
        assert saga.status == saga_pb2.SAGA_STATUS_COMPLETED, saga.saga_id
        assert [[a.code for a in step.attempts] for step in saga.steps] == [["OK"], ["OK"], ["OK"]], saga.saga_id
