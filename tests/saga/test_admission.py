"""What one replica and Consul hold of sagas stays bounded.

A replica drives at most --saga-max-driving sagas at once: a flood of sagas whose participants are slow
(or hang) cannot fill its memory. Past the cap StartSaga is RESOURCE_EXHAUSTED and writes nothing, and
orphaned sagas wait for a replica with room. One caller (identity, else address) may hold at most
--saga-max-driving-per-caller of them, so its flood leaves room for other callers. Ended sagas are
removed from Consul once --saga-retention has passed. Real control planes, real Consul, real participants."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.client import connect
from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess, operator_tokens, wait_until
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, wait_ended
from tests.saga.test_crash_recovery import saga_args
from tests.saga.test_hostile_input import saga_keys


def plane(consul: LocalConsul, log: Path, prefix: str, replica: str, max_driving: int, *extra: str
          ) -> ControlPlaneProcess:
    return ControlPlaneProcess(consul.http_addr, log_path=log, extra_args=[
        *saga_args(prefix, replica), "--saga-max-driving", str(max_driving), *extra]).start()


@pytest.fixture
def prefix() -> str:
    return f"test-admission-{uuid.uuid4().hex[:8]}/"


def registered(stub: saga_pb2_grpc.SagaServiceStub, participants: Participants) -> str:
    name = f"order-{uuid.uuid4().hex[:6]}"
    stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
        definition=order_definition(name, participants.services)), timeout=10)
    return name


@pytest.fixture
def small_plane(consul: LocalConsul, tmp_path: Path, prefix: str) -> Iterator[ControlPlaneProcess]:
    process = plane(consul, tmp_path / "small.log", prefix, f"small-{uuid.uuid4().hex[:6]}", 2,
                    "--saga-max-driving-per-caller", "2")  # the replica's cap, not a caller's share
    yield process
    process.kill()


def test_past_its_cap_a_replica_refuses_new_sagas_writes_nothing_and_still_answers_repeats(
    small_plane: ControlPlaneProcess, participants: Participants, consul: LocalConsul
) -> None:
    with small_plane.channel() as channel:
        stub = saga_pb2_grpc.SagaServiceStub(channel)
        name = registered(stub, participants)
        first, second = (start(stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}")) for _ in range(2))
        assert first.created and second.created  # each call sleeps 0.4 s: both are still being driven

        refused_id = f"saga-{uuid.uuid4().hex[:12]}"
        with pytest.raises(grpc.RpcError) as refused:
            start(stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}"), saga_id=refused_id)
        repeat = stub.StartSaga(saga_pb2.StartSagaRequest(
            saga_id=first.saga.saga_id, definition_name=name, input=first.saga.input), timeout=10)

        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--saga-max-driving" in refused.value.details()
        assert saga_keys(consul, refused_id) == []
        assert not repeat.created and repeat.saga.saga_id == first.saga.saga_id

        for saga_id in (first.saga.saga_id, second.saga.saga_id):
            assert wait_ended(stub, saga_id).status == saga_pb2.SAGA_STATUS_COMPLETED
        assert start(stub, name, order_input(f"ok-{uuid.uuid4().hex[:8]}"), saga_id=refused_id).created


def refusal(stub: saga_pb2_grpc.SagaServiceStub, name: str) -> tuple[grpc.StatusCode, str, str]:
    """(code, details, saga id) of a StartSaga expected to be refused."""
    saga_id = f"saga-{uuid.uuid4().hex[:12]}"
    with pytest.raises(grpc.RpcError) as refused:
        start(stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}"), saga_id=saga_id)
    return refused.value.code(), refused.value.details(), saga_id


def test_one_caller_holds_at_most_its_share_and_another_caller_still_starts_sagas(
    consul: LocalConsul, tmp_path: Path, prefix: str, participants: Participants
) -> None:
    policy = tmp_path / "authz.yaml"
    tokens = operator_tokens(policy, "flooder", "other")
    process = plane(consul, tmp_path / "share.log", prefix, f"share-{uuid.uuid4().hex[:6]}", 3,
                    "--saga-max-driving-per-caller", "2", "--authz-policy", str(policy))
    try:
        # Both identities call over one address: the share is the identity's, not the address's.
        with connect(process.address, token=tokens["flooder"]).channel() as channel, \
                connect(process.address, token=tokens["other"]).channel() as other_channel:
            stub, other_stub = saga_pb2_grpc.SagaServiceStub(channel), saga_pb2_grpc.SagaServiceStub(other_channel)
            name = registered(stub, participants)
            held = [start(stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}")) for _ in range(2)]
            code, details, refused_id = refusal(stub, name)
            leftover = saga_keys(consul, refused_id, prefix)
            others = start(other_stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}"))
            full_code, full_details, _ = refusal(other_stub, name)  # 3 driven: the replica is full
            ended = [wait_ended(stub, s.saga.saga_id).status for s in (*held, others)]
            again = start(stub, name, order_input(f"ok-{uuid.uuid4().hex[:8]}"), saga_id=refused_id)
    finally:
        process.kill()

    assert all(s.created for s in held) and others.created
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--saga-max-driving-per-caller" in details
    assert leftover == []
    assert full_code == grpc.StatusCode.RESOURCE_EXHAUSTED and "(--saga-max-driving)" in full_details
    assert ended == [saga_pb2.SAGA_STATUS_COMPLETED] * 3
    assert again.created  # its share is free again once its sagas ended


def test_callers_without_an_identity_are_told_apart_by_address(
    consul: LocalConsul, tmp_path: Path, prefix: str, participants: Participants
) -> None:
    process = plane(consul, tmp_path / "address.log", prefix, f"address-{uuid.uuid4().hex[:6]}", 3,
                    "--saga-max-driving-per-caller", "1")
    try:
        with process.channel() as channel, process.channel() as second_connection:
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = registered(stub, participants)
            held = start(stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}"))
            # Another connection from the same address is the same caller.
            code, details, refused_id = refusal(saga_pb2_grpc.SagaServiceStub(second_connection), name)
            leftover = saga_keys(consul, refused_id, prefix)
            wait_ended(stub, held.saga.saga_id)
    finally:
        process.kill()

    assert held.created
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--saga-max-driving-per-caller" in details
    assert leftover == []


def test_a_full_replica_adopts_orphaned_sagas_as_it_has_room(
    consul: LocalConsul, tmp_path: Path, prefix: str, participants: Participants
) -> None:
    dying = plane(consul, tmp_path / "dying.log", prefix, "dying", max_driving=100)
    heir = None
    try:
        with dying.channel() as channel:
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = registered(stub, participants)
            started = [start(stub, name, order_input(f"slow-{uuid.uuid4().hex[:8]}")).saga.saga_id for _ in range(3)]
        dying.kill()  # its three sagas are orphaned mid-step
        heir = plane(consul, tmp_path / "heir.log", prefix, "heir", max_driving=1)
        with heir.channel() as channel:
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            ended = [wait_ended(stub, saga_id, timeout=60) for saga_id in started]
    finally:
        dying.kill()
        if heir is not None:
            heir.kill()

    assert [saga.status for saga in ended] == [saga_pb2.SAGA_STATUS_COMPLETED] * 3
    # The heir drove one saga at a time: the spans of its attempts on different sagas never overlap.
    spans = sorted((min(a.started_at.ToNanoseconds() for a in mine), max(a.finished_at.ToNanoseconds() for a in mine))
                   for saga in ended
                   if (mine := [a for step in saga.steps for a in step.attempts if a.replica == "heir"]))
    assert len(spans) == 3, spans
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), spans


# --- retention: ended sagas are removed once their retention has passed ---------------------------------


def test_ended_sagas_are_removed_after_their_retention_and_sagas_needing_attention_are_kept(
    consul: LocalConsul, tmp_path: Path, prefix: str, participants: Participants
) -> None:
    retention = 3.0
    process = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "retention.log", extra_args=[
        *saga_args(prefix, f"retention-{uuid.uuid4().hex[:6]}"), "--saga-retention", str(retention),
        "--saga-sweep-interval", "0.2"]).start()
    try:
        with process.channel() as channel:
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = registered(stub, participants)
            completed = start(stub, name, order_input(f"ok-{uuid.uuid4().hex[:8]}"))
            compensated = start(stub, name, order_input(f"declined-{uuid.uuid4().hex[:8]}", amount_cents=500_000))
            attention = start(stub, name, order_input(f"stuck-{uuid.uuid4().hex[:8]}", amount_cents=500_000))
            swept = [completed.saga.saga_id, compensated.saga.saga_id]
            ended = [wait_ended(stub, saga_id) for saga_id in swept]
            kept_at_first = [stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=s), timeout=5).saga.status for s in swept]
            assert wait_ended(stub, attention.saga.saga_id).status == saga_pb2.SAGA_STATUS_NEEDS_ATTENTION

            def gone() -> bool:
                return all(not saga_keys(consul, saga_id, prefix) for saga_id in swept)

            wait_until(gone, 30, what="the ended sagas to be removed")
            missing = []
            for saga_id in swept:
                with pytest.raises(grpc.RpcError) as failure:
                    stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=saga_id), timeout=5)
                missing.append(failure.value.code())
            listed = {s.saga_id for s in stub.ListSagas(saga_pb2.ListSagasRequest(), timeout=5).sagas}
            still = stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=attention.saga.saga_id), timeout=5).saga
            again = start(stub, name, order_input(f"ok-{uuid.uuid4().hex[:8]}"), saga_id=completed.saga.saga_id)
    finally:
        process.kill()

    assert [s.status for s in ended] == [saga_pb2.SAGA_STATUS_COMPLETED, saga_pb2.SAGA_STATUS_COMPENSATED]
    assert kept_at_first == [s.status for s in ended]  # kept while their retention runs
    assert missing == [grpc.StatusCode.NOT_FOUND] * 2
    assert listed == {attention.saga.saga_id}
    assert still.status == saga_pb2.SAGA_STATUS_NEEDS_ATTENTION and saga_keys(consul, attention.saga.saga_id, prefix)
    assert again.created  # the id names a new saga once the old one is gone
