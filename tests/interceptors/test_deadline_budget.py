"""Deadline arithmetic and budgets, without a network."""

from __future__ import annotations

import grpc
import pytest

from controlplane.interceptors import DeadlinePolicy, Rejection, current_budget, deadline_budget
from controlplane.interceptors.call import CallKind, OutgoingCall
from controlplane.interceptors.deadlines import DeadlineConcern, outgoing_timeout

from .servers import FakeClock


def test_outgoing_timeout_is_the_smaller_of_own_timeout_and_remaining_budget_less_margin() -> None:
    assert outgoing_timeout(own=5.0, default=30.0, remaining=2.0, margin=0.1) == pytest.approx(1.9)
    assert outgoing_timeout(own=1.0, default=30.0, remaining=2.0, margin=0.1) == 1.0


def test_outgoing_timeout_uses_the_default_only_when_the_caller_set_none() -> None:
    assert outgoing_timeout(own=None, default=30.0, remaining=None, margin=0.1) == 30.0
    assert outgoing_timeout(own=4.0, default=30.0, remaining=None, margin=0.1) == 4.0
    assert outgoing_timeout(own=None, default=None, remaining=None, margin=0.1) is None
    assert outgoing_timeout(own=None, default=None, remaining=3.0, margin=0.5) == 2.5


def test_outgoing_timeout_is_not_positive_once_the_budget_is_spent() -> None:
    assert outgoing_timeout(own=None, default=30.0, remaining=0.05, margin=0.1) <= 0


def call(method: str = "/pkg.S/M", timeout: float | None = None) -> OutgoingCall:
    return OutgoingCall(method, CallKind.UNARY_UNARY, timeout)


def test_concern_applies_the_policy_default_outside_any_budget() -> None:
    outgoing = call()
    DeadlineConcern(DeadlinePolicy(default_timeout=7, timeouts={"pkg.S/M": 3})).start(outgoing)
    assert outgoing.timeout == 3.0


def test_concern_caps_calls_at_the_budget_as_the_clock_moves(clock: FakeClock) -> None:
    concern = DeadlineConcern(DeadlinePolicy(default_timeout=30, margin=0.1))
    with deadline_budget(2.0, clock):
        first = call()
        concern.start(first)
        clock.advance(1.5)
        second = call(timeout=10)
        concern.start(second)
    assert first.timeout == pytest.approx(1.9)
    assert second.timeout == pytest.approx(0.4)


def test_concern_refuses_a_call_whose_budget_is_spent(clock: FakeClock) -> None:
    concern = DeadlineConcern(DeadlinePolicy(margin=0.1))
    with deadline_budget(1.0, clock):
        clock.advance(0.95)
        with pytest.raises(Rejection) as refused:
            concern.start(call())
    assert refused.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline budget spent before calling /pkg.S/M" in refused.value.details


def test_budget_propagation_can_be_switched_off(clock: FakeClock) -> None:
    concern = DeadlineConcern(DeadlinePolicy(default_timeout=30, propagate=False))
    with deadline_budget(1.0, clock):
        clock.advance(5)
        outgoing = call()
        concern.start(outgoing)
    assert outgoing.timeout == 30.0


def test_budget_is_scoped_to_its_block(clock: FakeClock) -> None:
    assert current_budget() is None
    with deadline_budget(3.0, clock) as budget:
        assert current_budget() is budget
        clock.advance(1)
        assert budget is not None and budget.remaining() == pytest.approx(2.0)
    assert current_budget() is None
