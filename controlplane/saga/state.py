"""A saga's state is the fold of its events. Pure: no I/O, no clock, no definition needed.

Every event carries what the fold needs (step names at start, the data a response added, ...), so a
saga's state can be rebuilt from its stream alone, by any replica, at any time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from controlplane.saga import templates
from controlplane.saga.eventstore.model import Event


class SagaStatus(enum.IntEnum):
    """Where a saga stands. Values match controlplane.v1.SagaStatus."""

    RUNNING = 1
    COMPENSATING = 2
    COMPLETED = 3
    COMPENSATED = 4
    NEEDS_ATTENTION = 5

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.NEEDS_ATTENTION)


class StepStatus(enum.IntEnum):
    """Where one step stands. Values match controlplane.v1.StepStatus."""

    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    COMPENSATING = 5
    COMPENSATED = 6
    COMPENSATION_FAILED = 7


class EventType:
    """The event types of a saga stream."""

    SAGA_STARTED = "saga_started"
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    SAGA_ABORTED = "saga_aborted"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_SUCCEEDED = "compensation_succeeded"
    COMPENSATION_FAILED = "compensation_failed"
    SAGA_COMPLETED = "saga_completed"
    SAGA_COMPENSATED = "saga_compensated"
    SAGA_NEEDS_ATTENTION = "saga_needs_attention"


# The code recorded for an attempt whose outcome was never recorded (its driver stopped mid-call).
UNKNOWN_OUTCOME = "UNKNOWN"


@dataclass
class Attempt:
    """One call of an action or a compensation. Times are Unix seconds."""

    attempt: int
    compensation: bool
    started_at: float
    finished_at: float | None = None
    code: str = ""  # gRPC status code name; "OK" on success, "" while in flight
    error: str = ""
    replica: str = ""


@dataclass
class StepProgress:
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    response: dict[str, Any] | None = None
    # The last failure may have taken effect (UNAVAILABLE, DEADLINE_EXCEEDED, unrecorded outcome).
    outcome_unknown: bool = False
    # The action (or, once compensating, the compensation) will not be tried again.
    gave_up: bool = False

    def attempts_of(self, compensation: bool) -> list[Attempt]:
        return [a for a in self.attempts if a.compensation == compensation]

    def failures_of(self, compensation: bool) -> int:
        """Attempts that ended in an error (unrecorded outcomes are not failures)."""
        return sum(1 for a in self.attempts_of(compensation) if a.code not in ("", "OK", UNKNOWN_OUTCOME))

    def earlier_outcome_unknown(self) -> bool:
        """Whether an earlier attempt of the action may have taken effect: the last failure left its
        outcome unknown, or an attempt's outcome was never recorded."""
        return self.outcome_unknown or any(a.code == UNKNOWN_OUTCOME for a in self.attempts_of(False))

    def last_finished_at(self, compensation: bool) -> float | None:
        done = [a.finished_at for a in self.attempts_of(compensation) if a.finished_at is not None]
        return max(done) if done else None


@dataclass
class SagaState:
    """Everything known about one saga at stream version `version`.

    `input`, `data` and the steps' `response` are JSON values that are never changed in place, only
    replaced (`templates.assigned` copies just the path it sets): states, their clones and the events
    they were folded from share them, so a transition costs no deep copy.
    """

    saga_id: str
    definition_name: str = ""
    definition_version: int = 0
    status: SagaStatus = SagaStatus.RUNNING
    input: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    current_step: int = -1
    steps: list[StepProgress] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    deadline: float | None = None  # Unix seconds past which a running saga is compensated
    trace_id: str = ""
    fingerprint: str = ""  # identifies the StartSaga request, for idempotent starts
    errors: list[str] = field(default_factory=list)
    version: int = 0

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def clone(self) -> SagaState:
        """An independent copy, for folding new events into. Much cheaper than copy.deepcopy: the fold
        mutates only steps, attempts and errors; JSON values are replaced, never changed (see above)."""
        return SagaState(
            saga_id=self.saga_id,
            definition_name=self.definition_name,
            definition_version=self.definition_version,
            status=self.status,
            input=self.input,
            data=self.data,
            current_step=self.current_step,
            steps=[StepProgress(s.name, s.status, [Attempt(a.attempt, a.compensation, a.started_at, a.finished_at,
                                                           a.code, a.error, a.replica) for a in s.attempts],
                                s.response, s.outcome_unknown, s.gave_up) for s in self.steps],
            created_at=self.created_at,
            updated_at=self.updated_at,
            deadline=self.deadline,
            trace_id=self.trace_id,
            fingerprint=self.fingerprint,
            errors=list(self.errors),
            version=self.version,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot; `from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SagaState:
        fields = dict(raw)
        fields["status"] = SagaStatus(fields["status"])
        fields["steps"] = [
            StepProgress(
                **{
                    **step,
                    "status": StepStatus(step["status"]),
                    "attempts": [Attempt(**a) for a in step["attempts"]],
                }
            )
            for step in fields["steps"]
        ]
        return cls(**fields)


def evolve(state: SagaState, events: Iterable[Event]) -> SagaState:
    """The state after `events`, as a new object (`state` is left as it was)."""
    new = state.clone()
    for event in events:
        apply(new, event)
    return new


def apply(state: SagaState, event: Event) -> None:
    """Fold one event into `state`, in place."""
    handler = _HANDLERS.get(event.type)
    if handler is not None:  # unknown types (from a newer replica) leave the state as it is
        handler(state, event)
    state.version += 1
    state.updated_at = event.at


def _started(state: SagaState, event: Event) -> None:
    d = event.data
    state.definition_name = d["definition_name"]
    state.definition_version = int(d["definition_version"])
    state.input = dict(d.get("input") or {})
    state.data = state.input  # until a step's response adds to it (a new object then)
    state.steps = [StepProgress(name=name) for name in d["steps"]]
    state.created_at = event.at
    state.deadline = d.get("deadline")
    state.trace_id = d.get("trace_id", "")
    state.fingerprint = d.get("fingerprint", "")
    state.status = SagaStatus.RUNNING


def _attempt_started(compensation: bool) -> Any:
    def handle(state: SagaState, event: Event) -> None:
        step = state.steps[event.step]
        for earlier in step.attempts_of(compensation):
            if not earlier.code:
                earlier.code = UNKNOWN_OUTCOME
                earlier.error = "outcome unknown: the driver stopped before recording it; sent again"
        step.attempts.append(
            Attempt(
                attempt=int(event.data["attempt"]),
                compensation=compensation,
                started_at=event.at,
                replica=str(event.data.get("replica", "")),
            )
        )
        step.status = StepStatus.COMPENSATING if compensation else StepStatus.RUNNING
        if compensation:
            step.gave_up = False
            state.status = SagaStatus.COMPENSATING
        state.current_step = event.step

    return handle


def _finish(step: StepProgress, event: Event, compensation: bool, code: str, error: str = "") -> None:
    attempt = int(event.data["attempt"])
    for a in step.attempts:
        if a.compensation == compensation and a.attempt == attempt:
            a.finished_at = event.at
            a.code = code
            a.error = error


def _step_succeeded(state: SagaState, event: Event) -> None:
    step = state.steps[event.step]
    _finish(step, event, False, "OK")
    step.status = StepStatus.SUCCEEDED
    step.response = dict(event.data.get("response") or {})
    step.outcome_unknown = False
    for path, value in (event.data.get("data") or {}).items():
        state.data = templates.assigned(state.data, path, value)


def _step_failed(state: SagaState, event: Event) -> None:
    step = state.steps[event.step]
    code, error = event.data["code"], event.data.get("error", "")
    _finish(step, event, False, code, error)
    step.status = StepStatus.FAILED
    step.outcome_unknown = bool(event.data.get("outcome_unknown"))
    state.errors.append(f"step {step.name} attempt {event.data['attempt']}: {code}: {error}")
    if event.data.get("final"):
        step.gave_up = True
        if state.status == SagaStatus.RUNNING:
            state.status = SagaStatus.COMPENSATING


def _aborted(state: SagaState, event: Event) -> None:
    state.errors.append(f"aborted: {event.data.get('reason', '')}")
    if state.status == SagaStatus.RUNNING:
        state.status = SagaStatus.COMPENSATING


def _compensation_succeeded(state: SagaState, event: Event) -> None:
    step = state.steps[event.step]
    _finish(step, event, True, "OK")
    step.status = StepStatus.COMPENSATED


def _compensation_failed(state: SagaState, event: Event) -> None:
    step = state.steps[event.step]
    code, error = event.data["code"], event.data.get("error", "")
    _finish(step, event, True, code, error)
    step.status = StepStatus.COMPENSATION_FAILED
    step.gave_up = bool(event.data.get("final"))
    state.errors.append(f"compensation of {step.name} attempt {event.data['attempt']}: {code}: {error}")


def _ended(status: SagaStatus) -> Any:
    def handle(state: SagaState, event: Event) -> None:
        state.status = status
        state.current_step = -1
        if event.data.get("reason"):
            state.errors.append(str(event.data["reason"]))

    return handle


_HANDLERS = {
    EventType.SAGA_STARTED: _started,
    EventType.STEP_STARTED: _attempt_started(False),
    EventType.STEP_SUCCEEDED: _step_succeeded,
    EventType.STEP_FAILED: _step_failed,
    EventType.SAGA_ABORTED: _aborted,
    EventType.COMPENSATION_STARTED: _attempt_started(True),
    EventType.COMPENSATION_SUCCEEDED: _compensation_succeeded,
    EventType.COMPENSATION_FAILED: _compensation_failed,
    EventType.SAGA_COMPLETED: _ended(SagaStatus.COMPLETED),
    EventType.SAGA_COMPENSATED: _ended(SagaStatus.COMPENSATED),
    EventType.SAGA_NEEDS_ATTENTION: _ended(SagaStatus.NEEDS_ATTENTION),
}
