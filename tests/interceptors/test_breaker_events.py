"""Events and finer metrics of breakers and bulkheads, and the hooks that judge outcomes beyond the code.

Driven through the concerns (what an interceptor does per call) with a fake clock: no network, no sleeping.
"""

from __future__ import annotations

import grpc
import pytest

from controlplane.interceptors import (
    BreakerEvent,
    BreakerEventKind,
    BreakerPolicy,
    BreakerRegistry,
    BulkheadEvent,
    BulkheadEventKind,
    BulkheadPolicy,
    BulkheadRegistry,
    CallKind,
    Outcome,
    OutgoingCall,
    Rejection,
    State,
)
from controlplane.interceptors.breaker import BreakerConcern
from controlplane.interceptors.bulkhead import BulkheadConcern

from .servers import FakeClock

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def call(method: str = "/pkg.S/M") -> OutgoingCall:
    return OutgoingCall(method, CallKind.UNARY_UNARY, None)


def through(concern: BreakerConcern, clock: FakeClock, outcome: Outcome, seconds: float = 0.0) -> bool:
    """One call through the concern taking `seconds`; whether it was let through."""
    try:
        scope = concern.start(call())
    except Rejection:
        return False
    clock.advance(seconds)
    scope.end(outcome)
    return True


def test_every_call_outcome_refusal_and_transition_is_an_event(clock: FakeClock) -> None:
    events: list[BreakerEvent] = []
    registry = BreakerRegistry(BreakerPolicy(minimum_calls=2, window_size=2, wait_in_open=10), clock=clock,
                               event_listeners=[events.append])
    concern = BreakerConcern(registry)
    through(concern, clock, Outcome(OK), 0.25)
    through(concern, clock, Outcome(UNAVAILABLE, "down"), 0.5)
    assert not through(concern, clock, Outcome(OK))
    kinds = [e.kind for e in events]
    assert kinds == [
        BreakerEventKind.SUCCESS,
        BreakerEventKind.ERROR,
        BreakerEventKind.FAILURE_RATE_EXCEEDED,
        BreakerEventKind.STATE_TRANSITION,
        BreakerEventKind.NOT_PERMITTED,
    ]
    assert [e.duration for e in events[:2]] == [0.25, 0.5]
    assert [e.code for e in events[:2]] == [OK, UNAVAILABLE]
    assert events[2].rate == 0.5
    transition = events[3].transition
    assert transition is not None and (transition.old, transition.new) == (State.CLOSED, State.OPEN)
    assert {e.breaker for e in events} == {"pkg.S"}


def test_slow_call_rate_reaching_its_threshold_is_reported_with_its_rate(clock: FakeClock) -> None:
    events: list[BreakerEvent] = []
    policy = BreakerPolicy(minimum_calls=4, window_size=4, slow_call_duration=1.0, slow_call_rate_threshold=0.75)
    registry = BreakerRegistry(policy, clock=clock, event_listeners=[events.append])
    concern = BreakerConcern(registry)
    for seconds in (0.1, 2.0, 2.0, 2.0):
        through(concern, clock, Outcome(OK), seconds)
    exceeded = [e for e in events if e.kind is BreakerEventKind.SLOW_CALL_RATE_EXCEEDED]
    assert [e.rate for e in exceeded] == [0.75]
    assert registry.get("pkg.S").state is State.OPEN


def test_ignored_outcomes_are_events_of_their_own_and_count_neither_way(clock: FakeClock) -> None:
    events: list[BreakerEvent] = []
    policy = BreakerPolicy(minimum_calls=1, window_size=1,
                           ignore_predicate=lambda outcome: outcome.details == "client went away")
    registry = BreakerRegistry(policy, clock=clock, event_listeners=[events.append])
    concern = BreakerConcern(registry)
    through(concern, clock, Outcome(grpc.StatusCode.CANCELLED))
    through(concern, clock, Outcome(UNAVAILABLE, "client went away"))
    assert [e.kind for e in events] == [BreakerEventKind.IGNORED_ERROR] * 2
    assert registry.get("pkg.S").snapshot().calls == 0
    assert registry.get("pkg.S").state is State.CLOSED


def test_a_failure_predicate_judges_outcomes_beyond_the_failure_codes(clock: FakeClock) -> None:
    def not_the_leader(outcome: Outcome) -> bool:
        return outcome.code is grpc.StatusCode.FAILED_PRECONDITION and "not the leader" in (outcome.details or "")

    policy = BreakerPolicy(minimum_calls=2, window_size=2, failure_predicate=not_the_leader)
    concern = BreakerConcern(BreakerRegistry(policy, clock=clock))
    through(concern, clock, Outcome(grpc.StatusCode.FAILED_PRECONDITION, "order is already paid"))
    through(concern, clock, Outcome(grpc.StatusCode.FAILED_PRECONDITION, "not the leader, try another"))
    snapshot = concern.registry.get("pkg.S").snapshot()
    assert (snapshot.calls, snapshot.failures) == (2, 1)


def test_predicates_cannot_come_from_a_document() -> None:
    with pytest.raises(ValueError, match="can only be set in code"):
        BreakerPolicy.from_dict({"failure_predicate": "lambda o: True"})


@pytest.mark.parametrize("window", ["count", "time"])
def test_snapshot_counts_slow_successes_and_slow_failures_apart_with_the_mean_duration(
    clock: FakeClock, window: str
) -> None:
    policy = BreakerPolicy(window=window, window_size=60, minimum_calls=100, slow_call_duration=1.0)
    concern = BreakerConcern(BreakerRegistry(policy, clock=clock))
    for code, seconds in ((OK, 0.5), (OK, 1.5), (UNAVAILABLE, 2.0), (UNAVAILABLE, 3.0), (UNAVAILABLE, 0.0)):
        through(concern, clock, Outcome(code), seconds)
    snapshot = concern.registry.get("pkg.S").snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == (5, 3, 3)
    assert (snapshot.slow_successes, snapshot.slow_failures) == (1, 2)
    assert snapshot.mean_duration == pytest.approx(7.0 / 5)


def test_a_count_window_forgets_durations_with_the_calls_that_slid_out(clock: FakeClock) -> None:
    concern = BreakerConcern(BreakerRegistry(BreakerPolicy(window_size=2, minimum_calls=100), clock=clock))
    for seconds in (10.0, 1.0, 3.0):
        through(concern, clock, Outcome(OK), seconds)
    assert concern.registry.get("pkg.S").snapshot().mean_duration == pytest.approx(2.0)


def test_streams_count_as_calls_without_a_duration(clock: FakeClock) -> None:
    concern = BreakerConcern(BreakerRegistry(BreakerPolicy(minimum_calls=100), clock=clock))
    scope = concern.start(OutgoingCall("/pkg.S/Watch", CallKind.UNARY_STREAM, None))
    clock.advance(3600)
    scope.end(Outcome(OK))
    snapshot = concern.registry.get("pkg.S").snapshot()
    assert (snapshot.calls, snapshot.slow_calls, snapshot.mean_duration) == (1, 0, None)


def test_reset_is_an_event(clock: FakeClock) -> None:
    events: list[BreakerEvent] = []
    registry = BreakerRegistry(clock=clock)
    registry.add_event_listener(events.append)
    breaker = registry.get("pkg.S")
    breaker.force_open()
    breaker.reset()
    assert [e.kind for e in events] == [BreakerEventKind.STATE_TRANSITION, BreakerEventKind.STATE_TRANSITION,
                                        BreakerEventKind.RESET]


def test_a_failing_listener_does_not_break_the_call_or_the_other_listeners(clock: FakeClock) -> None:
    events: list[BreakerEvent] = []

    def broken(event: BreakerEvent) -> None:
        raise RuntimeError("listener bug")

    concern = BreakerConcern(BreakerRegistry(clock=clock, event_listeners=[broken, events.append]))
    assert through(concern, clock, Outcome(OK))
    assert [e.kind for e in events] == [BreakerEventKind.SUCCESS]


def test_bulkhead_reports_permitted_rejected_and_finished_calls() -> None:
    events: list[BulkheadEvent] = []
    registry = BulkheadRegistry(BulkheadPolicy(max_concurrent=1))
    registry.add_listener(events.append)
    concern = BulkheadConcern(registry)
    slot = concern.start(call())
    with pytest.raises(Rejection):
        concern.start(call())
    slot.end(Outcome(OK))
    assert [e.kind for e in events] == [BulkheadEventKind.PERMITTED, BulkheadEventKind.REJECTED,
                                        BulkheadEventKind.FINISHED]
    assert {e.bulkhead for e in events} == {"pkg.S"}
