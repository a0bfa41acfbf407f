"""A saga's message carries its latest attempts and errors, so GetSaga and WatchSaga of any saga fit gRPC.

No network: the conversions GetSaga and WatchSaga send, from states the orchestrator can reach.
"""

from __future__ import annotations

from controlplane.saga.convert import (
    WIRE_ATTEMPTS,
    WIRE_ERRORS,
    WIRE_STEP_ERROR_BYTES,
    SagaWire,
    saga_to_proto,
)
from controlplane.saga.definitions import MAX_STEPS
from controlplane.saga.eventstore import Event
from controlplane.saga.orchestrator import MAX_ERROR_TEXT
from controlplane.saga.record_size import MAX_STATE_BYTES
from controlplane.saga.state import Attempt, EventType, SagaState, StepProgress, apply, evolve

GRPC_MAX_MESSAGE = 4 * 2**20  # what gRPC clients accept by default
MAX_ATTEMPTS = 100  # a step's retry.max_attempts, for its action and for its compensation
WIDE = "\U0001f600" * MAX_ERROR_TEXT  # the longest error the orchestrator records: 8,000 bytes of UTF-8


def attempts(count: int, compensation: bool, error: str) -> list[Attempt]:
    return [Attempt(n, compensation, 1000.0 + n, 1000.5 + n, "UNAVAILABLE", error, "replica-1")
            for n in range(1, count + 1)]


def test_the_largest_saga_there_can_be_fits_one_grpc_message() -> None:
    # 50 steps, each with 100 failed attempts of its action and 100 of its compensation, every error as long
    # as recorded, one saga error per failed attempt, and a state as large as is stored: ~160 MB in all.
    history = attempts(MAX_ATTEMPTS, False, WIDE) + attempts(MAX_ATTEMPTS, True, WIDE)
    steps = [StepProgress(f"step-{n}", attempts=list(history)) for n in range(MAX_STEPS)]
    errors = [f"step step-{n} attempt {a}: UNAVAILABLE: {WIDE}" for n in range(MAX_STEPS) for a in range(200)]
    state = SagaState("s", input={"blob": "i" * (MAX_STATE_BYTES // 2)}, data={"blob": "d" * (MAX_STATE_BYTES // 2)},
                      steps=steps, errors=errors)

    message = saga_to_proto(state)

    assert message.ByteSize() < GRPC_MAX_MESSAGE * 3 // 4
    assert list(message.errors) == errors[-WIRE_ERRORS:] and message.errors_left_out == len(errors) - WIRE_ERRORS
    for step in message.steps:
        shown = [(a.compensation, a.attempt) for a in step.attempts]
        assert shown == sorted(shown)  # oldest first, actions before the compensations that followed them
        assert (False, MAX_ATTEMPTS) in shown and (True, MAX_ATTEMPTS) in shown  # the newest of each kind
        assert sum(len(a.error.encode()) for a in step.attempts) <= WIRE_STEP_ERROR_BYTES
        assert step.attempts_left_out == 2 * MAX_ATTEMPTS - len(shown)


def test_a_steps_latest_attempts_are_carried_while_their_errors_fit() -> None:
    ascii_error = "e" * MAX_ERROR_TEXT  # 20 of these fit a step's 40 KiB
    step = StepProgress("charge", attempts=attempts(30, False, ascii_error) + attempts(30, True, ascii_error))

    shown = saga_to_proto(SagaState("s", steps=[step])).steps[0]

    assert [(a.compensation, a.attempt) for a in shown.attempts] == (
        [(False, n) for n in range(31 - WIRE_ATTEMPTS, 31)] + [(True, n) for n in range(31 - WIRE_ATTEMPTS, 31)])
    assert shown.attempts_left_out == 60 - 2 * WIRE_ATTEMPTS


def test_a_saga_with_a_few_attempts_is_carried_whole() -> None:
    step = StepProgress("charge", attempts=attempts(3, False, "card declined") + attempts(5, True, "busy"))

    shown = saga_to_proto(SagaState("s", steps=[step], errors=["one", "two"]))

    assert len(shown.steps[0].attempts) == 8 and shown.steps[0].attempts_left_out == 0
    assert list(shown.errors) == ["one", "two"] and shown.errors_left_out == 0


def test_watch_messages_built_incrementally_equal_a_full_conversion_past_the_cut() -> None:
    state = evolve(SagaState("s1"), [Event(EventType.SAGA_STARTED, 1000.0, {
        "definition_name": "order", "definition_version": 1, "input": {}, "steps": ["reserve"], "deadline": None})])
    wire = SagaWire(state)
    for n in range(1, WIRE_ERRORS + WIRE_ATTEMPTS + 5):
        for kind, data in ((EventType.STEP_STARTED, {"step": 0, "attempt": n}),
                           (EventType.STEP_FAILED, {"step": 0, "attempt": n, "code": "UNAVAILABLE", "error": f"e{n}",
                                                    "final": False, "outcome_unknown": False})):
            event = Event(kind, 1000.0 + n, data)
            apply(state, event)
            assert wire.update(state, event) == saga_to_proto(state), (n, kind)
    assert wire.message.errors_left_out > 0 and wire.message.steps[0].attempts_left_out > 0
