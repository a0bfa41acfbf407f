"""Fixtures of the saga tests: participants registered through the RegistryService, and definitions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, wait_discoverable


@pytest.fixture(scope="module")
def participants(control_plane: ControlPlaneProcess) -> Iterator[Participants]:
    found = Participants(control_plane.address, slow_seconds=0.4)
    with grpc.insecure_channel(control_plane.address) as channel:
        wait_discoverable(channel, found.services)
    yield found
    found.stop()


@pytest.fixture
def sagas(channel: grpc.Channel) -> saga_pb2_grpc.SagaServiceStub:
    return saga_pb2_grpc.SagaServiceStub(channel)


@pytest.fixture(scope="module")
def order_saga(control_plane: ControlPlaneProcess, participants: Participants) -> str:
    """The name of a registered order saga definition whose steps call `participants`."""
    name = f"order-{uuid.uuid4().hex[:8]}"
    with grpc.insecure_channel(control_plane.address) as channel:
        saga_pb2_grpc.SagaServiceStub(channel).RegisterDefinition(
            saga_pb2.RegisterDefinitionRequest(definition=order_definition(name, participants.services)), timeout=10
        )
    return name
