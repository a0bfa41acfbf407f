"""Drives sagas: one asyncio task per saga this replica holds the lock of.

A driver repeats: plan (pure) -> record the planned events, together with the outcome of the previous
call, in one append -> perform the effect (call a participant, wait out a backoff, or stop). Since
every transition is in Consul before the next call, a driver that dies leaves a state from which
any replica can go on; a call whose outcome was not recorded is sent again with the same
idempotency key, and the participant answers it from its record instead of acting twice.

Appends check that this replica still holds the saga's lock; a driver whose append conflicts re-reads
the saga and goes on only if the lock is still its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from controlplane.errors import (
    AlreadyExistsError,
    ConflictError,
    ConsulUnavailable,
    LimitExceeded,
    NotFoundError,
    PreconditionError,
)
from controlplane.held import Held
from controlplane.log_budget import LogBudget
from controlplane.saga import planner, record_size, templates
from controlplane.saga.definition_store import DefinitionStore
from controlplane.saga.definitions import Definition, Step
from controlplane.saga.eventstore import Event
from controlplane.saga.invoker import IDEMPOTENCY_KEY, SAGA_ID_KEY, CallFailed, Invoker
from controlplane.saga.leases import Leases
from controlplane.saga.planner import Call, Effect, Finish, Sleep
from controlplane.saga.repository import SagaRepository
from controlplane.saga.settings import SagaSettings
from controlplane.saga.state import EventType, SagaState, SagaStatus, apply, evolve

log = logging.getLogger(__name__)
_breaker_waits_log = LogBudget(log)

MAX_ERROR_TEXT = 2000
SESSION_WAIT = 5.0  # seconds StartSaga waits for this replica's Consul session


def idempotency_key(saga_id: str, step: int, step_name: str, compensation: bool) -> str:
    """The `idempotency-key` of a step's calls: the same for every attempt, different for its undo."""
    key = f"{saga_id}/{step}:{step_name}"
    return f"{key}/compensate" if compensation else key


_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def fingerprint(definition_name: str, requested_version: int, saga_input: Mapping[str, Any]) -> str:
    """Identifies a StartSaga request, so a repeat can be told from a different request with the same id."""
    canonical = _canonical_json([definition_name, requested_version, saga_input])
    return hashlib.sha256(canonical.encode()).hexdigest()


class SagaObserver:
    """Told what the orchestrator does, for metrics; the default does nothing. Must not block or raise."""

    def saga_started(self, definition: str) -> None: ...

    def saga_ended(self, definition: str, status: str) -> None: ...

    def step_attempted(self, definition: str, step: str, compensation: bool, attempt: int, code: str,
                       seconds: float) -> None: ...


class Orchestrator:
    observer: SagaObserver = SagaObserver()

    def __init__(
        self,
        repository: SagaRepository,
        definitions: DefinitionStore,
        invoker: Invoker,
        leases: Leases,
        settings: SagaSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repo = repository
        self._definitions = definitions
        self._invoker = invoker
        self._leases = leases
        self._settings = settings
        self._clock = clock
        self._drivers: dict[str, asyncio.Task[None]] = {}
        # The state of each saga driven here, as last recorded: reads need not ask Consul for it.
        self._live: dict[str, SagaState] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        # Sagas whose StartSaga is recording them here: their lock may be in Consul before their driver
        # exists, and the takeover scan must not adopt them meanwhile (it would send a second attempt).
        # (A count: the same saga id may be started by two concurrent requests.)
        self._starting: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._left_orphans = False  # the takeover scan left sagas without a driver: this replica was full
        # Who started each saga driven here (adopted sagas have no caller), and how many each caller has.
        self._callers: dict[str, str] = {}
        self._held = Held()

    @property
    def replica_id(self) -> str:
        return self._leases.replica_id

    def live_state(self, saga_id: str) -> SagaState | None:
        """The recorded state of a saga this replica drives (shared: clone before changing it)."""
        return self._live.get(saga_id)

    @property
    def driving(self) -> int:
        """How many sagas this replica drives now."""
        return len(self._drivers)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._leases.run(on_lost=self._drop_all), name="saga-session"),
            loop.create_task(self._leases.watch_sessions(), name="saga-sessions-watch"),
            loop.create_task(self._takeover_loop(), name="saga-takeover"),
        ]

    async def stop(self) -> None:
        """Stop every driver (their sagas stay as recorded) and give up the session, so others take over."""
        for task in self._tasks:
            task.cancel()
        self._drop_all()
        await asyncio.gather(*self._tasks, *self._drivers.values(), return_exceptions=True)
        await self._leases.close()

    # -- API used by the servicer ---------------------------------------------------------------

    async def start_saga(
        self, saga_id: str, definition: Definition, saga_input: dict[str, Any], requested_version: int, trace_id: str,
        caller: str = "",
    ) -> tuple[SagaState, bool]:
        """Record the saga's start (and its first step's) and drive it; (state, created).

        Idempotent by saga id: a repeat of the same request returns the saga as it is now. `caller` (its
        identity, else its address; "" for none) may have at most `caller_share` sagas driven here.
        """
        if not self._leases.ready:  # right after start the replica may still be creating its session
            try:
                await asyncio.wait_for(self._leases.wait_ready(), SESSION_WAIT)
            except TimeoutError:
                raise ConsulUnavailable("this replica has no Consul session; retry shortly") from None
        if self._full():
            return await self._existing_when_full(
                saga_id, definition, requested_version, saga_input,
                f"this replica drives {self._settings.max_driving} sagas, the most it may (--saga-max-driving)")
        if caller and self._held.of(caller) >= self._settings.caller_share:
            return await self._existing_when_full(
                saga_id, definition, requested_version, saga_input,
                f"this replica drives {self._settings.caller_share} sagas this caller started, the most one caller "
                "may (--saga-max-driving-per-caller)")
        now = self._clock()
        started = Event(EventType.SAGA_STARTED, now, {
            "definition_name": definition.name,
            "definition_version": definition.version,
            "input": saga_input,
            "steps": [step.name for step in definition.steps],
            "deadline": now + definition.timeout if definition.timeout is not None else None,
            "trace_id": trace_id,
            "fingerprint": fingerprint(definition.name, requested_version, saga_input),
        })
        after = evolve(SagaState(saga_id), [started])
        first = planner.plan(after, definition, now, self.replica_id)
        for event in first.events:
            apply(after, event)
        events = [started, *first.events]
        self._starting[saga_id] = self._starting.get(saga_id, 0) + 1
        self._hold(caller)
        created = False
        try:
            state, existing = await self._record_start(saga_id, events, after, first.effect)
            if existing is None:
                assert state is not None
                self.observer.saga_started(definition.name)
                self._callers[saga_id] = caller
                self._spawn(saga_id, state, definition, first.effect)
                created = True
                return state, True
        finally:
            if self._starting[saga_id] == 1:
                del self._starting[saga_id]
            else:
                self._starting[saga_id] -= 1
            if not created:
                self._release(caller)
        return self._repeated(existing, started.data["fingerprint"]), False

    def _hold(self, caller: str) -> None:
        if caller:
            self._held.add(caller)

    def _release(self, caller: str | None) -> None:
        if caller:
            self._held.remove(caller)

    def _repeated(self, existing: SagaState, requested: str) -> SagaState:
        """The saga a StartSaga repeats (same id): itself when the request is the same, else ALREADY_EXISTS."""
        if existing.fingerprint != requested:
            raise AlreadyExistsError(
                f"saga {existing.saga_id} already exists with a different definition or input; "
                "use a new saga id for a new saga"
            )
        if not existing.terminal and existing.saga_id not in self._drivers:
            self._leases.changed.set()  # an earlier start may have taken the lock but lost its answer
        return existing

    def _full(self) -> bool:
        """Whether this replica drives (or is starting) as many sagas as it may."""
        return len(self._drivers) + len(self._starting) >= self._settings.max_driving

    async def _existing_when_full(self, saga_id: str, definition: Definition, requested_version: int,
                                  saga_input: dict[str, Any], why: str) -> tuple[SagaState, bool]:
        """A replica with no room (for the caller) starts nothing, but still answers the repeat of a start."""
        existing = await self._repo.load(saga_id)
        if existing is None:
            raise LimitExceeded(f"{why}; retry shortly, or on another replica")
        return self._repeated(existing, fingerprint(definition.name, requested_version, saga_input)), False

    async def _record_start(self, saga_id: str, events: list[Event], after: SagaState, effect: Effect
                            ) -> tuple[SagaState | None, SagaState | None]:
        """(the new saga's state, None), or (None, the saga already recorded under this id)."""
        for retry in (True, False):
            extra = [self._leases.lock_op(saga_id)]
            if isinstance(effect, Finish):
                extra.append(self._leases.release_op(saga_id))
            try:
                return await self._repo.append(saga_id, None, events, extra_ops=extra, after=after), None
            except ConflictError:
                existing = await self._repo.load(saga_id)
                if existing is not None:
                    return None, existing
                # The lock could not be taken: Consul dropped this replica's session (a long pause). The
                # caller did nothing wrong: start again on the new session rather than answer ABORTED.
                if retry and await self._leases.renewed_after_loss(SESSION_WAIT):
                    continue
                raise
        raise AssertionError("unreachable: the last round returns or raises")

    async def abort(self, saga_id: str, reason: str) -> SagaState:
        """Record an abort; the saga's driver, wherever it runs, compensates from its next transition."""
        for _ in range(20):
            state = await self._repo.load(saga_id)
            if state is None:
                raise NotFoundError(f"no saga {saga_id!r}")
            if state.terminal:
                raise PreconditionError(f"saga {saga_id} has already ended ({state.status.name}); nothing to abort")
            if state.status == SagaStatus.COMPENSATING:
                return state
            event = Event(EventType.SAGA_ABORTED, self._clock(), {"reason": reason or "aborted by request"})
            try:
                state = await self._repo.append(saga_id, state, [event])
            except ConflictError:
                continue  # the driver recorded a transition meanwhile: look again
            self._poke(saga_id)
            return state
        raise ConflictError(f"saga {saga_id} kept changing; try the abort again")

    # -- drivers --------------------------------------------------------------------------------

    def _spawn(self, saga_id: str, state: SagaState | None, definition: Definition | None,
               effect: Effect | None) -> None:
        if saga_id in self._drivers:
            return
        # A fresh context: a driver started by StartSaga must not inherit that call's deadline budget or
        # span (the call ends long before the saga may); its participant calls continue the saga's trace.
        task = asyncio.get_running_loop().create_task(
            self._supervise(saga_id, state, definition, effect), name=f"saga:{saga_id}", context=contextvars.Context()
        )
        self._drivers[saga_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._drivers.get(saga_id) is done:
                del self._drivers[saga_id]
                self._release(self._callers.pop(saga_id, None))
                self._wakeups.pop(saga_id, None)
                self._live.pop(saga_id, None)
                if self._left_orphans:  # room again for sagas the takeover scan had to leave
                    self._left_orphans = False
                    self._leases.changed.set()

        task.add_done_callback(forget)

    def _drop_all(self) -> None:
        for task in list(self._drivers.values()):
            task.cancel()

    def _poke(self, saga_id: str) -> None:
        wakeup = self._wakeups.get(saga_id)
        if wakeup is not None:
            wakeup.set()

    async def _supervise(self, saga_id: str, state: SagaState | None, definition: Definition | None,
                         effect: Effect | None) -> None:
        delay = self._settings.consul_backoff.initial
        while True:
            try:
                if state is None:
                    state = await self._load_owned(saga_id)
                    if state is None:
                        return
                self._live[saga_id] = state
                if definition is None:
                    definition = await self._definitions.get(state.definition_name, state.definition_version)
                await self._drive(saga_id, state, definition, effect)
                return
            except asyncio.CancelledError:
                raise
            except ConsulUnavailable as exc:
                log.warning("saga %s: Consul unavailable (%s); retrying in %.2fs", saga_id, exc, delay)
            except NotFoundError as exc:
                log.error("saga %s cannot be driven: %s", saga_id, exc.message)
                return
            except Exception:
                log.exception("saga %s: driver failed; resuming from the recorded state in %.2fs", saga_id, delay)
            state, effect = None, None
            await asyncio.sleep(delay)
            delay = self._settings.consul_backoff.next(delay)

    async def _load_owned(self, saga_id: str) -> SagaState | None:
        """The saga's state if it still needs driving and this replica holds its lock."""
        state = await self._repo.load(saga_id)
        if state is None or state.terminal:
            return None
        if not await self._leases.holds(saga_id):
            log.info("saga %s is no longer this replica's to drive", saga_id)
            return None
        return state

    async def _drive(self, saga_id: str, state: SagaState, definition: Definition, effect: Effect | None) -> None:
        outcome: list[Event] = []
        delay = self._settings.consul_backoff.initial
        # (step, compensation) -> seconds its action or compensation waited for circuit breakers
        breaker_waits: dict[tuple[int, bool], float] = {}
        while True:
            if effect is None:
                after = state.clone()  # one copy per transition: outcome and plan are folded into it
                for event in outcome:
                    apply(after, event)
                step = planner.plan(after, definition, self._clock(), self.replica_id)
                for event in step.events:
                    apply(after, event)
                events = outcome + step.events
                if events:
                    extra = [self._leases.check_op(saga_id)]
                    if isinstance(step.effect, Finish):
                        extra.append(self._leases.release_op(saga_id))
                    try:
                        state = await self._repo.append(saga_id, state, events, extra_ops=extra, after=after)
                        self._live[saga_id] = state
                    except ConflictError:
                        reloaded = await self._load_owned(saga_id)
                        if reloaded is None:
                            return
                        state, outcome = reloaded, []
                        self._live[saga_id] = state
                        continue
                    except ConsulUnavailable as exc:
                        log.warning("saga %s: cannot record %s (%s); retrying in %.2fs",
                                    saga_id, [e.type for e in events], exc, delay)
                        await asyncio.sleep(delay)
                        delay = self._settings.consul_backoff.next(delay)
                        continue
                    delay = self._settings.consul_backoff.initial
                outcome = []
                effect = step.effect
            if isinstance(effect, Finish):
                log.debug("saga %s ended %s", saga_id, state.status.name)
                self.observer.saga_ended(definition.name, state.status.name.lower())
                return
            if isinstance(effect, Sleep):
                await self._sleep(saga_id, effect.seconds)
            elif isinstance(effect, Call):
                outcome = await self._call(saga_id, state, definition, effect, breaker_waits)
            effect = None

    async def _sleep(self, saga_id: str, seconds: float) -> None:
        wakeup = self._wakeups.setdefault(saga_id, asyncio.Event())
        wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), seconds)

    async def _call(self, saga_id: str, state: SagaState, definition: Definition, call: Call,
                    breaker_waits: dict[tuple[int, bool], float]) -> list[Event]:
        """Perform one attempt; the event recording its outcome."""
        spec = definition.steps[call.step]
        compensation = call.compensation
        template = spec.compensation_template if compensation else spec.request_template
        base = {"step": call.step, "attempt": call.attempt}
        metadata = [
            (IDEMPOTENCY_KEY, idempotency_key(saga_id, call.step, spec.name, compensation)),
            (SAGA_ID_KEY, saga_id),
        ]
        started = time.perf_counter()
        took_effect = False
        try:
            payload = templates.render(template, state.data)
            budget = (self._settings.compensation_breaker_wait if compensation
                      else planner.action_breaker_budget(state, definition, call.step, self._clock()))
            response = await self._send(saga_id, spec, call, payload, metadata, state.trace_id, breaker_waits,
                                        budget)
        except templates.TemplateError as exc:
            failure = CallFailed(grpc.StatusCode.INVALID_ARGUMENT, f"request template: {exc}")
        except CallFailed as exc:
            failure = exc
        else:
            if compensation:
                self.observer.step_attempted(definition.name, spec.name, compensation, call.attempt, "OK",
                                             time.perf_counter() - started)
                return [Event(EventType.COMPENSATION_SUCCEEDED, self._clock(), base)]
            added = templates.map_response(response, spec.response_mapping)
            record = {**base, "response": response, "data": added}
            too_large = record_size.oversized(state, record)
            if too_large is None:
                self.observer.step_attempted(definition.name, spec.name, compensation, call.attempt, "OK",
                                             time.perf_counter() - started)
                return [Event(EventType.STEP_SUCCEEDED, self._clock(), record)]
            failure = CallFailed(grpc.StatusCode.RESOURCE_EXHAUSTED, too_large)
            took_effect = True  # final, and compensated with the other steps
        self.observer.step_attempted(definition.name, spec.name, compensation, call.attempt, failure.code.name,
                                     time.perf_counter() - started)
        retry = definition.compensation_retry if compensation else spec.retry
        progress = state.steps[call.step]
        failures = progress.failures_of(compensation) + 1
        final = took_effect or planner.outcome_final(failures, retry.max_attempts, failure.retryable)
        # A call the breaker refused never reached the participant: it tells nothing about earlier attempts.
        unknown = took_effect or (progress.earlier_outcome_unknown() if failure.refused else failure.outcome_unknown)
        log.info("saga %s step %s%s attempt %d failed: %s%s", saga_id, spec.name,
                 " compensation" if compensation else "", call.attempt, failure, " (final)" if final else "")
        return [Event(EventType.COMPENSATION_FAILED if compensation else EventType.STEP_FAILED, self._clock(), {
            **base,
            "code": failure.code.name,
            "error": failure.message[:MAX_ERROR_TEXT],
            "final": final,
            "outcome_unknown": unknown,
        })]

    async def _send(self, saga_id: str, spec: Step, call: Call, payload: Any, metadata: list[tuple[str, str]],
                    trace_id: str, breaker_waits: dict[tuple[int, bool], float], budget: float) -> dict[str, Any]:
        """Call the participant. A call refused by this replica's circuit breaker never reached it, so
        it waits until the breaker lets a trial call through and tries again, without spending an
        attempt, for at most `budget` seconds in all per step and kind (`breaker_waits` keeps the
        seconds waited): a participant that restarted in a blink costs a second, not the saga."""
        method = spec.compensation if call.compensation else spec.action
        assert method is not None
        waits = (call.step, call.compensation)
        while True:
            try:
                return await self._invoker.call(spec.target_service, method, payload, timeout=call.timeout,
                                                metadata=metadata, trace_id=trace_id)
            except CallFailed as exc:
                if not exc.refused:
                    raise
                waited = breaker_waits.get(waits, 0.0)
                pause = planner.breaker_wait(exc.retry_after, waited, budget)
                if pause is None:
                    raise
                # Sagas behind one breaker wait in numbers: a few lines a minute per participant, not one each.
                _breaker_waits_log.log(logging.INFO, spec.target_service,
                                       "saga %s: %s of step %s waits %.2fs for a circuit breaker (%s)", saga_id,
                                       "compensation" if call.compensation else "action", spec.name, pause,
                                       exc.message)
                breaker_waits[waits] = waited + pause
                await asyncio.sleep(pause * random.uniform(1.0, 1.25))  # apart, not all at the same instant

    # -- takeover -------------------------------------------------------------------------------

    async def _takeover_loop(self) -> None:
        """Adopt sagas whose lock no session holds: after a replica died, or after this one restarted."""
        delay = self._settings.consul_backoff.initial
        while True:
            await self._leases.wait_ready()
            self._leases.changed.clear()
            try:
                free, mine = await self._leases.unowned()
                for saga_id in mine:
                    if saga_id not in self._drivers and saga_id not in self._starting:
                        log.info("replica %s resumes saga %s, which it holds but did not drive", self.replica_id,
                                 saga_id)
                        self._spawn(saga_id, None, None, None)
                for saga_id in free:
                    if self._full():
                        self._left_orphans = True  # for replicas with room, or for this one once it has some
                        break
                    if saga_id not in self._drivers and await self._leases.acquire(saga_id):
                        log.info("replica %s takes over saga %s", self.replica_id, saga_id)
                        self._spawn(saga_id, None, None, None)
                delay = self._settings.consul_backoff.initial
            except ConsulUnavailable as exc:
                log.warning("looking for orphaned sagas failed: %s", exc)
                await asyncio.sleep(delay)
                delay = self._settings.consul_backoff.next(delay)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leases.changed.wait(), self._settings.takeover_interval)


def new_trace_id() -> str:
    return secrets.token_hex(16)
