"""SIGKILL of the Consul leader during saga traffic and watches: nothing lost or doubled, writes refused
only while there is no leader, `stale` within about a second of each edge, everything resumes after the
election without restarting anything. With raft_multiplier 1 (what this project's agents use) and 5
(Consul's default), each bounded in time."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from controlplane import endpoints
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.cluster.conftest import Replicas, running_replicas
from tests.cluster.test_consul_outages import SIDE, StalenessProbe
from tests.helpers import wait_until
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, wait_discoverable, wait_ended

# After the election a replica's next Consul request may still be one that was waiting for the old leader.
SETTLING = 3.0  # seconds


@pytest.fixture(scope="module", params=[1, 5], ids=["raft_multiplier=1", "raft_multiplier=5"])
def elected(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with running_replicas(tmp_path_factory, raft_multiplier=request.param, production_timings=True) as running:
        yield running


def test_killing_the_consul_leader_during_saga_traffic_loses_and_doubles_nothing(elected: Replicas) -> None:
    replicas = elected
    participants = Participants(replicas.addresses, jitter=0.05)
    channel = endpoints.channel(replicas.addresses, idempotent=[endpoints.START_SAGA])
    stub = saga_pb2_grpc.SagaServiceStub(channel)
    started: list[tuple[str, str]] = []  # (order id, saga id), acknowledged by StartSaga
    refusals: list[tuple[float, grpc.StatusCode]] = []
    stop = threading.Event()
    killed = None
    try:
        wait_discoverable(channel, participants.services, timeout=30)
        name = f"leader-kill-{uuid.uuid4().hex[:6]}"
        stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
            definition=order_definition(name, participants.services, timeout="60s")), timeout=10)

        def traffic() -> None:
            for n in range(10_000):
                if stop.is_set():
                    return
                order, saga_id = f"lk-{n}-{uuid.uuid4().hex[:6]}", f"saga-{uuid.uuid4().hex[:12]}"
                give_up = time.monotonic() + 60
                while time.monotonic() < give_up:  # StartSaga is idempotent by saga id: retry until it answers
                    try:
                        start(stub, name, order_input(order), saga_id=saga_id)
                        started.append((order, saga_id))
                        break
                    except grpc.RpcError as exc:
                        refusals.append((time.monotonic(), exc.code()))
                        stop.wait(0.05)

        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        wait_until(lambda: len(started) >= 10, 30, what="ten sagas before the kill")
        probe = StalenessProbe(replicas.a.address, participants.services["order"])
        killed = replicas.cluster.leader()
        killed_at = time.monotonic()
        killed.kill()
        successor = replicas.cluster.leader(timeout=60)
        elected_at = time.monotonic()
        wait_until(lambda: probe.answers and probe.answers[-1][0] > elected_at + 2 * SIDE, 30,
                   what="answers after the election")
        probe.close()
        count_at_election = len(started)
        wait_until(lambda: len(started) >= count_at_election + 10, 60, what="ten sagas after the election")
        stop.set()
        worker.join(70)

        ended = [wait_ended(stub, saga_id, timeout=90) for _, saga_id in started]
        applied = participants.applied()
    finally:
        stop.set()
        participants.stop()
        channel.close()
        if killed is not None:
            killed.start(wait=False)  # back to three servers for whatever runs next

    fresh_while_down, stale_after = probe.wrong_seconds(killed_at, elected_at)
    failed_for = max(at for at, _ in refusals) - killed_at if refusals else 0.0
    print(f"leader kill: {len(started)} sagas, election {elected_at - killed_at:.2f}s, writes failed for "
          f"{failed_for:.2f}s, {len(refusals)} refused StartSaga attempts "
          f"({sum(code == grpc.StatusCode.ABORTED for _, code in refusals)} ABORTED); wrong stale: "
          f"{fresh_while_down:.2f}s fresh while down, {stale_after:.2f}s stale after")
    assert fresh_while_down <= SIDE and stale_after <= SIDE
    assert successor is not killed
    unfinished = [(s.saga_id, saga_pb2.SagaStatus.Name(s.status), list(s.errors)[-3:]) for s in ended
                  if s.status != saga_pb2.SAGA_STATUS_COMPLETED]
    assert unfinished == []
    for order, _ in started:  # every effect exactly once
        assert [applied[(op, order)] for op in ("reserve", "charge", "confirm")] == [1, 1, 1], order
    assert len({saga_id for _, saga_id in started}) == len(started)
    assert {code for _, code in refusals} <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    outside = [at for at, _ in refusals if not killed_at <= at <= elected_at + SETTLING]
    assert outside == [], f"refused {len(outside)} times while a leader was elected"
