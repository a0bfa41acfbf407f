"""What a saga does next, decided from its events alone (no network, injected clock)."""

from __future__ import annotations

from typing import Any

from controlplane.saga.convert import SagaWire, saga_to_proto
from controlplane.saga.definitions import compile_definition
from controlplane.saga.eventstore import Event
from controlplane.saga.planner import (
    BREAKER_MARGIN,
    HALF_OPEN_RETRY,
    MAX_HALF_OPEN_RETRY,
    Call,
    Finish,
    Sleep,
    breaker_wait,
    plan,
)
from controlplane.saga.state import EventType, SagaState, SagaStatus, StepStatus, apply, evolve
from tests.saga.sagas import order_definition

DEFINITION = compile_definition(order_definition("order", {"inventory": "inv", "payment": "pay", "order": "ord"}))
T0 = 1000.0


def started(deadline: float | None = None) -> SagaState:
    return evolve(SagaState("s1"), [Event(EventType.SAGA_STARTED, T0, {
        "definition_name": "order", "definition_version": 1, "input": {"order_id": "o1"},
        "steps": ["reserve", "charge", "confirm"], "deadline": deadline})])


def after(state: SagaState, *events: tuple[str, dict[str, Any]], at: float = T0) -> SagaState:
    return evolve(state, [Event(kind, at, data) for kind, data in events])


def succeeded(step: int, attempt: int = 1) -> list[tuple[str, dict[str, Any]]]:
    return [(EventType.STEP_STARTED, {"step": step, "attempt": attempt}),
            (EventType.STEP_SUCCEEDED, {"step": step, "attempt": attempt, "response": {}, "data": {}})]


def failed(step: int, attempt: int, code: str, final: bool, unknown: bool) -> list[tuple[str, dict[str, Any]]]:
    return [(EventType.STEP_STARTED, {"step": step, "attempt": attempt}),
            (EventType.STEP_FAILED, {"step": step, "attempt": attempt, "code": code, "error": "x", "final": final,
                                     "outcome_unknown": unknown})]


def test_a_new_saga_records_its_first_step_then_calls_it() -> None:
    decided = plan(started(), DEFINITION, T0)

    assert [e.type for e in decided.events] == [EventType.STEP_STARTED]
    assert decided.effect == Call(step=0, compensation=False, attempt=1, timeout=2.0)


def test_the_last_success_completes_the_saga() -> None:
    state = after(started(), *succeeded(0), *succeeded(1), *succeeded(2))

    decided = plan(state, DEFINITION, T0)

    assert [e.type for e in decided.events] == [EventType.SAGA_COMPLETED]
    assert decided.effect == Finish()


def test_a_call_interrupted_by_a_crash_is_sent_again_as_a_new_attempt() -> None:
    state = after(started(), (EventType.STEP_STARTED, {"step": 0, "attempt": 1}))

    decided = plan(state, DEFINITION, T0 + 5)
    resumed = evolve(state, decided.events)

    assert decided.effect == Call(step=0, compensation=False, attempt=2, timeout=2.0)
    assert [a.code for a in resumed.steps[0].attempts] == ["UNKNOWN", ""]


def test_a_retryable_failure_waits_out_its_backoff_before_the_next_attempt() -> None:
    state = after(started(), *failed(0, 1, "UNAVAILABLE", final=False, unknown=True))

    waiting = plan(state, DEFINITION, T0 + 0.004).effect
    assert isinstance(waiting, Sleep) and abs(waiting.seconds - 0.006) < 1e-9
    assert plan(state, DEFINITION, T0 + 0.02).effect == Call(step=0, compensation=False, attempt=2, timeout=2.0)


def test_compensation_undoes_succeeded_and_uncertain_steps_in_reverse_order() -> None:
    state = after(started(), *succeeded(0), *failed(1, 1, "DEADLINE_EXCEEDED", final=True, unknown=True))
    assert state.status == SagaStatus.COMPENSATING

    first = plan(state, DEFINITION, T0)
    state = after(evolve(state, first.events), (EventType.COMPENSATION_SUCCEEDED, {"step": 1, "attempt": 1}))
    second = plan(state, DEFINITION, T0)
    state = after(evolve(state, second.events), (EventType.COMPENSATION_SUCCEEDED, {"step": 0, "attempt": 1}))
    last = plan(state, DEFINITION, T0)

    assert (first.effect, second.effect) == (Call(1, True, 1, 2.0), Call(0, True, 1, 2.0))
    assert [e.type for e in last.events] == [EventType.SAGA_COMPENSATED]
    assert [s.status for s in evolve(state, last.events).steps] == [
        StepStatus.COMPENSATED, StepStatus.COMPENSATED, StepStatus.PENDING]


def test_a_step_refused_with_a_client_error_is_not_compensated() -> None:
    state = after(started(), *succeeded(0), *failed(1, 1, "FAILED_PRECONDITION", final=True, unknown=False))

    assert plan(state, DEFINITION, T0).effect == Call(step=0, compensation=True, attempt=1, timeout=2.0)


def always_undone(step: int) -> object:
    raw = order_definition("order", {"inventory": "inv", "payment": "pay", "order": "ord"})
    raw.steps[step].compensate_always = True
    return compile_definition(raw)


def test_a_compensate_always_step_is_undone_whatever_its_action_did() -> None:
    definition = always_undone(0)
    refused = after(started(), *failed(0, 1, "FAILED_PRECONDITION", final=True, unknown=False))
    never_ran = after(started(), *succeeded(0), *failed(1, 1, "INVALID_ARGUMENT", final=True, unknown=False))
    never_ran_definition = always_undone(2)  # confirm (step 2) never started

    assert plan(refused, definition, T0).effect == Call(step=0, compensation=True, attempt=1, timeout=2.0)
    assert plan(refused, DEFINITION, T0).effect == Finish()  # without the flag: nothing to undo
    assert plan(never_ran, never_ran_definition, T0).effect == Call(step=2, compensation=True, attempt=1,
                                                                    timeout=2.0)


def test_a_completed_saga_runs_no_compensate_always_undo() -> None:
    state = after(started(), *succeeded(0), *succeeded(1), *succeeded(2))

    assert [e.type for e in plan(state, always_undone(0), T0).events] == [EventType.SAGA_COMPLETED]


def test_a_compensation_that_gives_up_leaves_the_saga_needing_attention() -> None:
    state = after(started(), *succeeded(0), *failed(1, 1, "FAILED_PRECONDITION", final=True, unknown=False),
                  (EventType.COMPENSATION_STARTED, {"step": 0, "attempt": 1}),
                  (EventType.COMPENSATION_FAILED, {"step": 0, "attempt": 1, "code": "UNAVAILABLE", "error": "down",
                                                   "final": True}))

    decided = plan(state, DEFINITION, T0)
    ended = evolve(state, decided.events)

    assert decided.effect == Finish()
    assert ended.status == SagaStatus.NEEDS_ATTENTION
    assert len(ended.errors) == 3


def test_folding_a_response_into_the_data_leaves_earlier_states_as_they_were() -> None:
    first = after(started(), (EventType.STEP_STARTED, {"step": 0, "attempt": 1}),
                  (EventType.STEP_SUCCEEDED, {"step": 0, "attempt": 1, "response": {}, "data": {"a.b": 1}}))
    second = after(first, (EventType.STEP_STARTED, {"step": 1, "attempt": 1}),
                   (EventType.STEP_SUCCEEDED, {"step": 1, "attempt": 1, "response": {}, "data": {"a.c": 2}}))

    assert first.data == {"order_id": "o1", "a": {"b": 1}}
    assert second.data == {"order_id": "o1", "a": {"b": 1, "c": 2}}
    assert started().data == started().input == {"order_id": "o1"}


def test_an_attempt_refused_locally_keeps_what_earlier_attempts_left_unknown() -> None:
    timed_out = after(started(), *failed(0, 1, "DEADLINE_EXCEEDED", final=False, unknown=True),
                      (EventType.STEP_STARTED, {"step": 0, "attempt": 2}))
    interrupted = after(started(), (EventType.STEP_STARTED, {"step": 0, "attempt": 1}),
                        (EventType.STEP_STARTED, {"step": 0, "attempt": 2}))
    declined = after(started(), *failed(0, 1, "FAILED_PRECONDITION", final=False, unknown=False),
                     (EventType.STEP_STARTED, {"step": 0, "attempt": 2}))

    assert timed_out.steps[0].earlier_outcome_unknown()
    assert interrupted.steps[0].earlier_outcome_unknown()  # attempt 1's outcome was never recorded
    assert not declined.steps[0].earlier_outcome_unknown()
    assert not started().steps[0].earlier_outcome_unknown()


def test_a_compensation_refused_by_an_open_breaker_waits_until_a_trial_call_is_allowed() -> None:
    assert breaker_wait(retry_after=2.5, waited=0.0, budget=60.0) == 2.5 + BREAKER_MARGIN
    assert breaker_wait(retry_after=None, waited=0.0, budget=60.0) == HALF_OPEN_RETRY  # half-open, trials taken
    # Behind a half-open breaker the wait grows with the time waited, up to its cap.
    assert [breaker_wait(retry_after=None, waited=w, budget=60.0) for w in (0.4, 1.0, 3.0, 30.0)] == [
        HALF_OPEN_RETRY, 0.5, 1.5, MAX_HALF_OPEN_RETRY]
    assert breaker_wait(retry_after=0.0, waited=59.0, budget=60.0) == BREAKER_MARGIN


def test_a_refusal_counts_as_a_failed_attempt_once_the_wait_would_pass_the_budget() -> None:
    assert breaker_wait(retry_after=9.9, waited=55.0, budget=60.0) is None
    assert breaker_wait(retry_after=None, waited=60.0, budget=60.0) is None
    assert breaker_wait(retry_after=0.5, waited=0.0, budget=0.0) is None


def test_passing_the_deadline_aborts_and_compensates_at_once() -> None:
    state = after(started(deadline=T0 + 1), *succeeded(0))

    decided = plan(state, DEFINITION, T0 + 2)

    assert [e.type for e in decided.events] == [EventType.SAGA_ABORTED, EventType.COMPENSATION_STARTED]
    assert decided.effect == Call(step=0, compensation=True, attempt=1, timeout=2.0)


def test_a_step_call_never_outlives_the_saga_deadline() -> None:
    decided = plan(started(deadline=T0 + 0.5), DEFINITION, T0 + 0.2)

    assert isinstance(decided.effect, Call) and abs(decided.effect.timeout - 0.3) < 1e-9


def test_snapshot_round_trip_keeps_the_whole_state() -> None:
    state = after(started(), *succeeded(0), *failed(1, 1, "UNAVAILABLE", final=False, unknown=True))

    assert SagaState.from_json(state.to_json()) == state


def test_watch_messages_built_incrementally_equal_a_full_conversion() -> None:
    events = [Event(kind, T0 + i, data) for i, (kind, data) in enumerate(
        [*succeeded(0), *failed(1, 1, "UNAVAILABLE", final=False, unknown=True), *succeeded(1, 2),
         (EventType.SAGA_ABORTED, {"reason": "operator"}),
         (EventType.COMPENSATION_STARTED, {"step": 1, "attempt": 1})])]
    state = started()
    wire = SagaWire(state)

    for event in events:
        apply(state, event)
        assert wire.update(state, event) == saga_to_proto(state), event.type
