"""Participant calls and the control plane's own circuit breakers (one per participant instance).

A call the breaker refuses never reaches the participant. Actions and compensations refused that way
wait until the breaker lets a trial call through instead of spending their attempts (actions for at most
what their attempts could take, compensations for `--saga-compensation-breaker-wait`), so a participant
that restarted in a blink costs about a second, not the saga.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import LocalConsul
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, statuses, wait_discoverable, wait_ended
from tests.saga.test_crash_recovery import saga_args

WAIT_IN_OPEN = 1.0  # seconds
# Two failed calls to an instance open its breaker; one successful trial call closes it again.
POLICY = {"breaker": {"minimum_calls": 2, "window_size": 2, "wait_in_open": WAIT_IN_OPEN, "half_open_calls": 1}}


def plane(consul: LocalConsul, log: Path, *extra: str) -> ControlPlaneProcess:
    args = [*saga_args(f"test-breaker-{uuid.uuid4().hex[:8]}/", f"breaker-{uuid.uuid4().hex[:6]}"),
            "--saga-participant-policy", json.dumps(POLICY), *extra]
    return ControlPlaneProcess(consul.http_addr, log_path=log, extra_args=args).start()


@pytest.fixture(scope="module")
def breaker_plane(consul: LocalConsul, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    """A control plane whose participant breakers open fast and stay open for WAIT_IN_OPEN seconds."""
    process = plane(consul, tmp_path_factory.mktemp("breaker") / "controlplane.log")
    yield process
    process.kill()


@pytest.fixture(scope="module")
def impatient_plane(consul: LocalConsul, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    """The same, but compensations may not wait for breakers at all."""
    process = plane(consul, tmp_path_factory.mktemp("impatient") / "controlplane.log",
                    "--saga-compensation-breaker-wait", "0")
    yield process
    process.kill()


def run_declined_charge(control_plane: ControlPlaneProcess) -> tuple[saga_pb2.Saga, str, Participants]:
    """A saga whose Charge fails UNAVAILABLE until the breaker of the payment instance opens, against
    participants of its own (so breakers start closed)."""
    participants = Participants(control_plane.address)
    try:
        with grpc.insecure_channel(control_plane.address) as channel:
            wait_discoverable(channel, participants.services)
            stub = saga_pb2_grpc.SagaServiceStub(channel)
            name = f"breaker-{uuid.uuid4().hex[:6]}"
            stub.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(
                definition=order_definition(name, participants.services)), timeout=10)
            order = f"down-{uuid.uuid4().hex[:8]}"
            saga = wait_ended(stub, start(stub, name, order_input(order)).saga.saga_id)
    finally:
        participants.stop()
    return saga, order, participants


def attempts(step: saga_pb2.StepState, compensation: bool) -> list[saga_pb2.Attempt]:
    return [a for a in step.attempts if a.compensation == compensation]


def seconds(attempt: saga_pb2.Attempt) -> float:
    return (attempt.finished_at.ToNanoseconds() - attempt.started_at.ToNanoseconds()) / 1e9


def test_an_action_refused_by_the_open_breaker_waits_for_its_trial_call_instead_of_spending_an_attempt(
    breaker_plane: ControlPlaneProcess,
) -> None:
    saga, order, participants = run_declined_charge(breaker_plane)

    charge = attempts(saga.steps[1], compensation=False)
    assert [a.code for a in charge] == ["UNAVAILABLE"] * 3
    assert all("payment gateway down" in a.error for a in charge)  # every attempt reached the participant
    assert seconds(charge[2]) > WAIT_IN_OPEN / 2  # the third waited for the breaker's trial call
    assert participants.calls()[("charge", order)] == 3


def test_a_compensation_waits_for_the_open_breaker_instead_of_giving_up(
    breaker_plane: ControlPlaneProcess,
) -> None:
    saga, order, participants = run_declined_charge(breaker_plane)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPENSATED, saga.errors
    assert statuses(saga) == ["COMPENSATED", "COMPENSATED", "PENDING"]
    refunds = attempts(saga.steps[1], compensation=True)
    assert [a.code for a in refunds] == ["OK"]  # no attempt spent on refusals
    assert seconds(refunds[0]) > WAIT_IN_OPEN / 2  # it waited for the breaker's trial call
    calls, applied = participants.calls(), participants.applied()
    assert (calls[("refund", order)], applied[("refund", order)]) == (1, 0)  # the charge never happened
    assert (applied[("reserve", order)], applied[("release", order)]) == (1, 1)


def test_refusals_count_as_failed_attempts_once_a_compensation_may_wait_no_longer(
    impatient_plane: ControlPlaneProcess,
) -> None:
    saga, order, participants = run_declined_charge(impatient_plane)

    assert saga.status == saga_pb2.SAGA_STATUS_NEEDS_ATTENTION
    refunds = attempts(saga.steps[1], compensation=True)
    assert [a.code for a in refunds] == ["UNAVAILABLE"] * 3
    assert all("circuit breaker" in a.error for a in refunds)
    assert participants.calls()[("refund", order)] == 0
