"""Saga data written before a view existed gets it: an older release's sagas are listed and swept.

The data of an older release is made by taking away what it did not write (the version record, the
index of ended sagas) and a by-status entry, after sagas ran; a replica started on it must put them back
from the streams, and retention must then remove the ended sagas as it removes its own.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import consul as consul_module
import pytest

from controlplane.consul.local_agent import LocalConsul
from controlplane.saga.eventstore import Event, EventStore
from controlplane.saga.projections import SagasByStatus
from controlplane.saga.repository import SagaRepository, fold_slice
from controlplane.saga.retention import EndedSagas
from controlplane.saga.state import EventType
from controlplane.saga.view_upgrade import VIEWS_VERSION, ViewUpgrade
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess, wait_until
from tests.saga.participants import Participants
from tests.saga.sagas import order_input, start, wait_ended
from tests.saga.test_admission import registered
from tests.saga.test_crash_recovery import saga_args
from tests.saga.test_event_store import run
from tests.saga.test_hostile_input import saga_keys


def kv(agent: LocalConsul) -> consul_module.Consul:
    host, port = agent.http_addr.split(":")
    return consul_module.Consul(host=host, port=int(port))


def version(agent: LocalConsul, prefix: str) -> int | None:
    _, entry = kv(agent).kv.get(f"{prefix}views/version")
    return json.loads(entry["Value"]).get("version") if entry else None


def plane(agent: LocalConsul, log: Path, prefix: str, *extra: str) -> ControlPlaneProcess:
    return ControlPlaneProcess(agent.http_addr, log_path=log, extra_args=[
        *saga_args(prefix, f"upgrade-{uuid.uuid4().hex[:6]}"), "--saga-sweep-interval", "0.2", *extra]).start()


@pytest.fixture
def prefix() -> str:
    return f"test-upgrade-{uuid.uuid4().hex[:8]}/"


def test_sagas_of_an_older_release_are_listed_and_swept_once_a_replica_upgrades_their_views(
    consul: LocalConsul, tmp_path: Path, prefix: str, participants: Participants
) -> None:
    older = plane(consul, tmp_path / "older.log", prefix, "--saga-retention", "0")  # keeps every saga
    try:
        with older.channel() as channel:
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = registered(stub, participants)
            completed = start(stub, name, order_input(f"ok-{uuid.uuid4().hex[:8]}")).saga.saga_id
            compensated = start(stub, name, order_input(f"declined-{uuid.uuid4().hex[:8]}",
                                                        amount_cents=500_000)).saga.saga_id
            attention = start(stub, name, order_input(f"stuck-{uuid.uuid4().hex[:8]}",
                                                      amount_cents=500_000)).saga.saga_id
            statuses = [wait_ended(stub, saga_id).status for saga_id in (completed, compensated, attention)]
            wait_until(lambda: version(consul, prefix) == VIEWS_VERSION, 10, what="the fresh data's version")
    finally:
        older.kill()
    assert statuses == [saga_pb2.SAGA_STATUS_COMPLETED, saga_pb2.SAGA_STATUS_COMPENSATED,
                        saga_pb2.SAGA_STATUS_NEEDS_ATTENTION]

    # What an older release leaves: no version record, no index of ended sagas, and here one saga
    # missing from the by-status view as well.
    client = kv(consul)
    client.kv.delete(f"{prefix}views/version")
    client.kv.delete(f"{prefix}views/ended/", recurse=True)
    _, by_status = client.kv.get(f"{prefix}views/by-status/", keys=True)
    client.kv.delete(next(key for key in by_status if key.endswith(f"/{attention}")))
    assert version(consul, prefix) is None
    assert all(saga_keys(consul, saga_id, prefix) for saga_id in (completed, compensated, attention))

    newer = plane(consul, tmp_path / "newer.log", prefix, "--saga-retention", "2")
    try:
        wait_until(lambda: version(consul, prefix) == VIEWS_VERSION, 30, what="the views to be upgraded")
        wait_until(lambda: not saga_keys(consul, completed, prefix) and not saga_keys(consul, compensated, prefix),
                   30, what="the older release's ended sagas to be removed")
        with newer.channel() as channel:
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            listed = {s.saga_id for s in stub.ListSagas(saga_pb2.ListSagasRequest(), timeout=5).sagas}
            kept = stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=attention), timeout=5).saga.status
    finally:
        newer.kill()
    assert listed == {attention}  # back in the by-status view; the two ended sagas are gone
    assert kept == saga_pb2.SAGA_STATUS_NEEDS_ATTENTION
    _, ended_index = client.kv.get(f"{prefix}views/ended/", keys=True)
    assert not ended_index  # the entries the upgrade added were swept with their sagas


def test_a_fresh_claim_of_another_replica_is_left_to_it_and_a_stale_one_is_taken_over(consul: LocalConsul) -> None:
    started = {"definition_name": "order", "definition_version": 1, "input": {}, "steps": ["one"]}
    now = [1_000_000.0]

    async def scenario(store: EventStore) -> tuple[bool, bool, bool, int | None]:
        projection = SagasByStatus(store._consul, store.prefix)
        ended = EndedSagas(store._consul, store, projection.key, retention=60)
        state = await SagaRepository(store, projection).append(  # recorded without the index of ended sagas
            "older", None, [Event(EventType.SAGA_STARTED, 1.0, started)])
        await SagaRepository(store, projection).append("older", state, [Event(EventType.SAGA_COMPLETED, 2.0)])
        upgrade = ViewUpgrade(store._consul, store, projection, ended, fold_slice, replica_id="mine",
                              claim_ttl=900, clock=lambda: now[0])
        claim = {"version": 1, "upgrading": {"to": VIEWS_VERSION, "by": "theirs", "at": now[0] - 10}}
        await store._consul.kv.put(upgrade.key, json.dumps(claim))
        left = await upgrade.step()
        indexed_while_left = bool(await ended.indexed())
        now[0] += 900  # their claim is now 910 s old: its replica is taken to be dead
        took_over = await upgrade.step()
        indexed = "older" in await ended.indexed()
        _, entry = await store._consul.kv.get(upgrade.key)
        return left, indexed_while_left, took_over and indexed, json.loads(entry["Value"]).get("version")

    left, indexed_while_left, took_over, version_after = run(consul, scenario)

    assert (left, indexed_while_left) == (False, False)
    assert took_over
    assert version_after == VIEWS_VERSION
