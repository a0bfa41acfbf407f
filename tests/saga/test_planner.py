"""What a saga does next, decided from its events alone (no network, injected clock)."""

from __future__ import annotations

from typing import Any

from controlplane.saga.convert import SagaWire, saga_to_proto
from controlplane.saga.definitions import compile_definition
from controlplane.saga.eventstore import Event
from controlplane.saga.planner import Call, Finish, Sleep, plan
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
