"""Consul restarted with an empty data directory: registrations, saga definitions and the replica's own
session and instance come back by themselves, within seconds, with nothing restarted."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf import json_format

from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import registry_pb2, registry_pb2_grpc, saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess, wait_until
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, wait_discoverable, wait_ended
from tests.saga.test_crash_recovery import saga_args

HEAL_WITHIN = 30.0  # seconds


def test_registrations_definitions_and_sessions_heal_after_consul_loses_its_data(tmp_path: Path) -> None:
    agent = LocalConsul(data_dir=tmp_path / "consul").start()
    definitions = tmp_path / "definitions.json"
    plane = ControlPlaneProcess(agent.http_addr, log_path=tmp_path / "controlplane.log", extra_args=[
        *saga_args(f"test-heal-{uuid.uuid4().hex[:6]}/", "heal"),
        "--saga-definitions", str(definitions), "--saga-definitions-reassert", "1"])
    participants = None
    try:
        plane.start()
        participants = Participants(plane.address)
        name = f"heal-{uuid.uuid4().hex[:6]}"
        definitions.write_text(json.dumps(json_format.MessageToDict(order_definition(name, participants.services))))
        with grpc.insecure_channel(plane.address) as channel:
            sagas, registry = saga_pb2_grpc.SagaServiceStub(channel), registry_pb2_grpc.RegistryServiceStub(channel)

            def defined() -> bool:
                try:
                    sagas.GetDefinition(saga_pb2.GetDefinitionRequest(name=name), timeout=5)
                    return True
                except grpc.RpcError:
                    return False

            def completes() -> bool:
                try:
                    saga = start(sagas, name, order_input(f"heal-{uuid.uuid4().hex[:6]}")).saga
                except grpc.RpcError:
                    return False
                return wait_ended(sagas, saga.saga_id).status == saga_pb2.SAGA_STATUS_COMPLETED

            def registered() -> bool:
                return all(registry.Discover(registry_pb2.DiscoverRequest(service=s), timeout=5).instances
                           for s in [*participants.services.values(), "controlplane-saga"])

            wait_until(defined, 20, what="the definition from the file")
            wait_discoverable(channel, participants.services)
            assert completes()

            agent.kill()
            shutil.rmtree(agent.data_dir / "data")  # everything Consul knew is gone
            agent.start()
            lost_at = time.monotonic()
            wait_until(registered, HEAL_WITHIN, interval=0.2, what="every instance registered again")
            registrations = time.monotonic() - lost_at
            wait_until(defined, HEAL_WITHIN, interval=0.2, what="the definition registered again")
            definition = time.monotonic() - lost_at
            wait_until(completes, HEAL_WITHIN, interval=0.2, what="a saga completing again")
            saga = time.monotonic() - lost_at
        print(f"consul data loss: registrations back in {registrations:.1f}s, definition {definition:.1f}s, "
              f"a saga completes after {saga:.1f}s")
    finally:
        if participants is not None:
            participants.stop()
        plane.kill()
        agent.destroy()
