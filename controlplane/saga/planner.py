"""What a saga does next, decided from its state alone. Pure: the clock is an argument.

`plan()` returns the events to record *before* acting and the effect to perform afterwards. The driver
writes those events to Consul first, so after a crash the state always tells which call may have been
in flight; that call is simply sent again with the same idempotency key.

Rules:
- Running: steps run in order; a failed attempt is retried after its backoff while attempts remain;
  a final failure, an abort, or passing the saga's deadline turns the saga to compensating.
- Compensating: steps are undone in reverse order. A step is undone when it succeeded, or when its
  outcome is unknown (in flight, or last failed with UNAVAILABLE/DEADLINE_EXCEEDED); a step that failed
  with a client error took no effect and is skipped, as are steps without a compensation, unless the
  step says `compensate_always`: its compensation runs however the saga ends short of completing,
  even for an action that failed, was refused or never started.
  A compensation that keeps failing is given up after its retries; the others still run, and the
  saga then ends NEEDS_ATTENTION instead of COMPENSATED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.saga.definitions import Definition
from controlplane.saga.eventstore.model import Event
from controlplane.saga.state import EventType, SagaState, SagaStatus, StepStatus, evolve


@dataclass(frozen=True)
class Call:
    """Call a step's action (or compensation); `timeout` in seconds."""

    step: int
    compensation: bool
    attempt: int
    timeout: float


@dataclass(frozen=True)
class Sleep:
    """Nothing to do for `seconds` (a retry backoff)."""

    seconds: float


@dataclass(frozen=True)
class Finish:
    """The saga has ended; stop driving it."""


Effect = Call | Sleep | Finish


@dataclass(frozen=True)
class Plan:
    events: list[Event] = field(default_factory=list)
    effect: Effect = Finish()


def plan(state: SagaState, definition: Definition, now: float, replica: str = "") -> Plan:
    """The events to record now and the effect that follows them."""
    recorded: list[Event] = []
    current = state
    for _ in range(4):  # an abort or deadline adds one event before the real decision
        events, effect = _next(current, definition, now, replica)
        recorded += events
        if effect is not None:
            return Plan(recorded, effect)
        current = evolve(current, events)
    raise AssertionError(f"saga {state.saga_id}: no decision after {recorded}")


def _next(s: SagaState, d: Definition, now: float, replica: str) -> tuple[list[Event], Effect | None]:
    if s.terminal:
        return [], Finish()
    if s.status == SagaStatus.RUNNING:
        return _running(s, d, now, replica)
    return _compensating(s, d, now, replica)


def _running(s: SagaState, d: Definition, now: float, replica: str) -> tuple[list[Event], Effect | None]:
    if s.deadline is not None and now >= s.deadline:
        budget = d.timeout if d.timeout is not None else s.deadline - s.created_at
        return [Event(EventType.SAGA_ABORTED, now, {"reason": f"deadline exceeded: the saga's {budget:g}s "
                                                               "budget ran out"})], None
    for k, step in enumerate(s.steps):
        if step.status == StepStatus.SUCCEEDED:
            continue
        spec = d.steps[k]
        remaining = spec.timeout if s.deadline is None else max(0.001, min(spec.timeout, s.deadline - now))
        if step.status == StepStatus.FAILED:
            wait = _backoff_left(step.failures_of(False), spec.retry.delay, step.last_finished_at(False), now)
            if wait > 0:
                if s.deadline is not None:
                    wait = min(wait, max(0.0, s.deadline - now))
                return [], Sleep(wait)
        attempt = len(step.attempts_of(False)) + 1
        started = Event(EventType.STEP_STARTED, now, {"step": k, "attempt": attempt, "replica": replica})
        return [started], Call(k, False, attempt, remaining)
    return [Event(EventType.SAGA_COMPLETED, now)], Finish()


def _compensating(s: SagaState, d: Definition, now: float, replica: str) -> tuple[list[Event], Effect | None]:
    for k in reversed(range(len(s.steps))):
        step, spec = s.steps[k], d.steps[k]
        if spec.compensation is None:
            continue
        needs_undo = step.status in (StepStatus.SUCCEEDED, StepStatus.RUNNING, StepStatus.COMPENSATING) or (
            step.status == StepStatus.FAILED and (step.outcome_unknown or spec.compensate_always)
        ) or (step.status == StepStatus.PENDING and spec.compensate_always)
        retry_undo = step.status == StepStatus.COMPENSATION_FAILED and not step.gave_up
        if not (needs_undo or retry_undo):
            continue
        if retry_undo:
            wait = _backoff_left(step.failures_of(True), d.compensation_retry.delay, step.last_finished_at(True), now)
            if wait > 0:
                return [], Sleep(wait)
        attempt = len(step.attempts_of(True)) + 1
        started = Event(EventType.COMPENSATION_STARTED, now, {"step": k, "attempt": attempt, "replica": replica})
        return [started], Call(k, True, attempt, spec.timeout)
    stuck = [step.name for step in s.steps if step.status == StepStatus.COMPENSATION_FAILED]
    if stuck:
        reason = f"compensation failed for {', '.join(stuck)}; an operator must look"
        return [Event(EventType.SAGA_NEEDS_ATTENTION, now, {"reason": reason})], Finish()
    return [Event(EventType.SAGA_COMPENSATED, now)], Finish()


def _backoff_left(failures: int, delay: object, last: float | None, now: float) -> float:
    if failures == 0 or last is None:
        return 0.0
    return max(0.0, last + delay(failures) - now)  # type: ignore[operator]


# Seconds a call waits when a half-open breaker refused it (its trial calls were all taken), at first; the
# wait grows with the time already waited, up to MAX_HALF_OPEN_RETRY, so thousands of sagas behind one
# breaker whose trials take long do not try again five times a second each.
HALF_OPEN_RETRY = 0.2
MAX_HALF_OPEN_RETRY = 2.0
# Seconds added to a breaker's retry-after (sent in whole milliseconds), so the wait surely covers it.
BREAKER_MARGIN = 0.01


def breaker_wait(retry_after: float | None, waited: float, budget: float) -> float | None:
    """Seconds a call refused by a circuit breaker waits before it tries again, without spending an
    attempt; None when the refusal counts as a failed attempt instead, because the call's total wait
    would exceed `budget`.

    retry_after: seconds until the breaker lets a trial call through (None: it is half-open and every
    trial call is taken). waited: seconds this step's action (or compensation) already waited for breakers.
    """
    if retry_after is None:
        pause = max(HALF_OPEN_RETRY, min(MAX_HALF_OPEN_RETRY, waited / 2))
    else:
        pause = max(0.0, retry_after) + BREAKER_MARGIN
    return pause if waited + pause <= budget else None


def action_breaker_budget(state: SagaState, definition: Definition, step: int, now: float) -> float:
    """Seconds in all a step's action may wait for circuit breakers: what its attempts could take
    (`max_attempts` x `timeout`), and never past the saga's deadline."""
    spec = definition.steps[step]
    budget = spec.retry.max_attempts * spec.timeout
    if state.deadline is not None:
        budget = min(budget, max(0.0, state.deadline - now))
    return budget


def outcome_final(failures_after: int, max_attempts: int, retryable: bool) -> bool:
    """Whether a failed attempt ends the retries: a client error, or no attempts left."""
    return not retryable or failures_after >= max_attempts
