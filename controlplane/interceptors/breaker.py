"""Circuit breaking per target: stop calling a failing service, and probe it before trusting it again.

States: CLOSED (calls flow; outcomes fill a sliding window), OPEN (calls fail at once with UNAVAILABLE and
metadata saying when the breaker will try again), HALF_OPEN (a few trial calls decide between CLOSED and
OPEN). The state machine (`CircuitBreaker`) is pure, driven by an injectable clock, and safe to share
between threads and asyncio tasks (a lock held only for a few arithmetic steps, never across an await).
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._config import from_mapping
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors._windows import CountWindow, Tally, TimeWindow, Window
from controlplane.interceptors.call import ClientConcern, Clock, Outcome, OutgoingCall, Rejection

__all__ = [
    "BREAKER_RETRY_AFTER_KEY",
    "BREAKER_STATE_KEY",
    "DEFAULT_FAILURE_CODES",
    "BreakerConcern",
    "BreakerEvent",
    "BreakerEventKind",
    "BreakerOpen",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerSnapshot",
    "CircuitBreaker",
    "State",
    "StateChange",
    "aio_client_interceptors",
    "client_interceptor",
]

log = logging.getLogger(__name__)

BREAKER_STATE_KEY = "x-breaker-state"
"""Trailing metadata of a call the breaker refused: "open", or "half_open" when all trial calls are taken."""
BREAKER_RETRY_AFTER_KEY = "x-breaker-retry-after-ms"
"""Trailing metadata of a call refused by an OPEN breaker: milliseconds until it lets trial calls through."""

DEFAULT_FAILURE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
"""Statuses that say the server is in trouble. Client errors (INVALID_ARGUMENT, NOT_FOUND, ...) are not."""


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    # Operator states, as resilience4j has them; only `reset()` (or another of these) leaves them.
    FORCED_OPEN = "forced_open"  # refuses every call
    DISABLED = "disabled"  # lets every call through and judges none
    METRICS_ONLY = "metrics_only"  # lets every call through and keeps the window's metrics, never opens


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens, how long it stays open, and how it decides to close again.

    failure_rate_threshold: open when at least this fraction (0..1] of the calls in the window failed.
    slow_call_rate_threshold: open when at least this fraction (0..1] of the calls in the window were slow.
    slow_call_duration: seconds from start to final status at or beyond which a call counts as slow.
    window: "count" judges the last `window_size` calls; "time" the calls of the last `window_size` seconds.
    window_size: calls (count window) or whole seconds (time window).
    minimum_calls: no verdict before the window holds this many calls (capped at window_size for "count").
    wait_in_open: seconds an OPEN breaker refuses calls before letting trial calls through, the first time
        it opens. Each time its trial calls fail and it opens again, the wait is multiplied by
        `wait_multiplier`, up to `max_wait_in_open` (as resilience4j's exponential interval function does);
        closing starts again from `wait_in_open`. So a brief blip costs about a second, a long outage
        few trial calls.
    wait_multiplier: factor (>= 1) by which the wait grows from one opening to the next.
    max_wait_in_open: the longest wait in OPEN (never below `wait_in_open`).
    half_open_calls: trial calls let through in HALF_OPEN; once all have ended, their failure and slow
        rates decide: below both thresholds closes the breaker, otherwise it opens again.
    max_wait_in_half_open: seconds HALF_OPEN may last without a verdict before the breaker opens again
        (trial calls that are long streams, or hang); None: as long as the trials take.
    failure_codes: final statuses that count as failures (names like "UNAVAILABLE" in `from_dict`).
    ignored_codes: final statuses that count neither way (default CANCELLED: the caller gave up, the
        server said nothing); their trial slot in HALF_OPEN is given back.
    per: "service" keeps one breaker per gRPC service (as a resilience4j user names one per backend);
        "method" one per method, so a failing method does not refuse the healthy ones of its service.
    failure_predicate: also a failure when it returns True for the call's `Outcome` (code and details),
        beyond `failure_codes` (resilience4j's recordException and recordResult); code only, not from a dict.
    ignore_predicate: also ignored when it returns True (resilience4j's ignoreException); code only.
    """

    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float = 5.0
    window: Literal["count", "time"] = "count"
    window_size: int = 100
    minimum_calls: int = 20
    wait_in_open: float = 1.0
    wait_multiplier: float = 2.0
    max_wait_in_open: float = 30.0
    half_open_calls: int = 5
    max_wait_in_half_open: float | None = None
    failure_codes: frozenset[grpc.StatusCode] = DEFAULT_FAILURE_CODES
    ignored_codes: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.CANCELLED})
    per: Literal["service", "method"] = "service"
    failure_predicate: Callable[[Outcome], bool] | None = field(default=None, metadata={"code_only": True})
    ignore_predicate: Callable[[Outcome], bool] | None = field(default=None, metadata={"code_only": True})

    def __post_init__(self) -> None:
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be a fraction in (0, 1], got {value}")
        if self.slow_call_duration <= 0:
            raise ValueError(f"slow_call_duration must be > 0 seconds, got {self.slow_call_duration}")
        if self.window not in ("count", "time"):
            raise ValueError(f"window must be 'count' or 'time', got {self.window!r}")
        for name in ("window_size", "minimum_calls", "half_open_calls"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.wait_in_open < 0:
            raise ValueError(f"wait_in_open must be >= 0 seconds, got {self.wait_in_open}")
        if not 1 <= self.wait_multiplier <= 100:
            raise ValueError(f"wait_multiplier must be 1..100, got {self.wait_multiplier}")
        if self.max_wait_in_half_open is not None and not 0 < self.max_wait_in_half_open < math.inf:
            raise ValueError(f"max_wait_in_half_open must be > 0 seconds or None, got {self.max_wait_in_half_open}")
        if self.max_wait_in_open < 0:
            raise ValueError(f"max_wait_in_open must be >= 0 seconds, got {self.max_wait_in_open}")
        object.__setattr__(self, "failure_codes", frozenset(self.failure_codes))
        object.__setattr__(self, "ignored_codes", frozenset(self.ignored_codes))
        if self.failure_codes & self.ignored_codes:
            raise ValueError("a status cannot be both a failure and ignored: "
                             f"{sorted(c.name for c in self.failure_codes & self.ignored_codes)}")
        if self.per not in ("service", "method"):
            raise ValueError(f"per must be 'service' or 'method', got {self.per!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerPolicy:
        """From e.g. `{"failure_rate_threshold": 0.5, "window": "time", "failure_codes": ["UNAVAILABLE"]}`."""
        return from_mapping(cls, data)

    def new_window(self) -> Window:
        return CountWindow(self.window_size) if self.window == "count" else TimeWindow(self.window_size)

    def open_wait(self, opening: int) -> float:
        """Seconds in OPEN for the `opening`-th consecutive opening (1: the first since it was closed)."""
        cap = max(self.max_wait_in_open, self.wait_in_open)
        wait = self.wait_in_open
        for _ in range(opening - 1):
            wait *= self.wait_multiplier
            if wait >= cap:
                return cap
        return min(wait, cap)


@dataclass(frozen=True)
class StateChange:
    """A breaker moved from `old` to `new` at `at` (seconds on the breaker's clock)."""

    breaker: str
    old: State
    new: State
    at: float


class BreakerEventKind(enum.Enum):
    """What a `BreakerEvent` reports (resilience4j's circuit breaker events)."""

    SUCCESS = "success"  # a permitted call ended and did not count as a failure
    ERROR = "error"  # a permitted call ended as a failure
    IGNORED_ERROR = "ignored_error"  # a permitted call ended with an ignored status (counted neither way)
    NOT_PERMITTED = "not_permitted"  # a call was refused
    STATE_TRANSITION = "state_transition"
    RESET = "reset"  # an operator reset the breaker
    FAILURE_RATE_EXCEEDED = "failure_rate_exceeded"  # the failure rate reached its threshold
    SLOW_CALL_RATE_EXCEEDED = "slow_call_rate_exceeded"  # the slow-call rate reached its threshold


@dataclass(frozen=True)
class BreakerEvent:
    """One thing that happened to breaker `breaker` at `at` (seconds on its clock).

    duration: call events of calls with one response: seconds from permit to final status.
    code: call events: the final status, when the caller knows it.
    transition: STATE_TRANSITION events: the change.
    rate: rate events: the rate (0..1) that reached its threshold.
    """

    breaker: str
    kind: BreakerEventKind
    at: float
    duration: float | None = None
    code: grpc.StatusCode | None = None
    transition: StateChange | None = None
    rate: float | None = None


@dataclass(frozen=True)
class BreakerSnapshot:
    """Metrics of one breaker at one moment.

    calls, failures, slow_calls: outcomes in the current window (in HALF_OPEN: of the trial calls so far;
        in OPEN: those that opened it); slow_failures and slow_successes split the slow calls.
    failure_rate, slow_call_rate: failures / calls and slow_calls / calls (0.0 with no calls).
    mean_duration: mean seconds of the calls with one response among them (None without any).
    rejected: calls refused since the breaker was created.
    retry_in: seconds until an OPEN breaker lets trial calls through; None in other states.
    """

    name: str
    state: State
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    rejected: int
    retry_in: float | None
    slow_failures: int = 0
    slow_successes: int = 0
    mean_duration: float | None = None


class BreakerOpen(Exception):
    """A call refused by a breaker; `retry_in` is seconds until trial calls (None when already trialling)."""

    def __init__(self, name: str, state: State, retry_in: float | None) -> None:
        self.name = name
        self.state = state
        self.retry_in = retry_in
        if state is State.FORCED_OPEN:
            message = f"circuit breaker '{name}' is forced open by an operator"
        elif retry_in is None:
            message = f"circuit breaker '{name}' is half-open and all its trial calls are taken"
        else:
            message = f"circuit breaker '{name}' is open; next trial call in {retry_in:.3f} s"
        self.message = message
        super().__init__(message)


_PERMITTING = frozenset({State.CLOSED, State.DISABLED, State.METRICS_ONLY})

Permit = tuple[int, float]  # (breaker generation, start time): outcomes of an older generation are ignored

Listener = Callable[[StateChange], None]
EventListener = Callable[[BreakerEvent], None]


class CircuitBreaker:
    """The breaker of one target. `acquire()` before a call, then `record()` or `release()` after it."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        clock: Clock = time.monotonic,
        listeners: Iterable[Listener] = (),
        event_listeners: Iterable[EventListener] = (),
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._listeners = list(listeners)
        self._event_listeners = list(event_listeners)
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._generation = 0
        self._window = self.policy.new_window()
        self._minimum_calls = (
            min(self.policy.minimum_calls, self.policy.window_size)
            if self.policy.window == "count"
            else self.policy.minimum_calls
        )
        self._open_until = 0.0
        self._openings = 0  # consecutive openings since the breaker was last closed
        self._opened_with = Tally()  # the outcomes that last opened it
        self._half_open_since = 0.0
        self._trials_started = 0
        self._trials = Tally()  # outcomes of the trial calls in HALF_OPEN
        self._rejected = 0

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(StateChange)` after every state change (outside the breaker's lock)."""
        self._listeners.append(listener)

    def add_event_listener(self, listener: EventListener) -> None:
        """Call `listener(BreakerEvent)` for every event: call outcomes, refusals, transitions, resets and
        rates reaching their thresholds (outside the breaker's lock, on the thread the event happened on)."""
        self._event_listeners.append(listener)

    @property
    def state(self) -> State:
        """The current state (an OPEN breaker whose wait is over reads as HALF_OPEN)."""
        if self._state is State.OPEN or self._state is State.HALF_OPEN:
            changes: list[StateChange] = []
            with self._lock:
                self._maybe_half_open(self._clock(), changes)
            self._notify(changes)
        return self._state

    def acquire(self) -> Permit:
        """A permit for one call, or `BreakerOpen` if the breaker refuses it."""
        answer = self.try_acquire()
        if isinstance(answer, BreakerOpen):
            raise answer
        return answer

    def try_acquire(self) -> Permit | BreakerOpen:
        """A permit for one call, or the `BreakerOpen` refusal (returned, not raised: refusing is this
        method's ordinary answer, and an OPEN breaker refuses every call in a hurry)."""
        if self._state is State.CLOSED:  # the hot path takes no lock: acquiring changes nothing in CLOSED
            return self._generation, self._clock()
        now = self._clock()
        if self._state is State.OPEN and now < self._open_until:  # refusing changes nothing but the count
            with self._lock:
                if self._state is State.OPEN:
                    self._rejected += 1
                    open_until = self._open_until
                else:
                    open_until = None
            if open_until is not None:
                if self._event_listeners:
                    self._emit([BreakerEvent(self.name, BreakerEventKind.NOT_PERMITTED, now)])
                return BreakerOpen(self.name, State.OPEN, max(open_until - now, 0.0))
        changes: list[StateChange] = []
        with self._lock:
            now = self._clock()
            self._maybe_half_open(now, changes)
            state = self._state
            permit: Permit | None = None
            if state in _PERMITTING:
                permit = self._generation, now
            elif state is State.HALF_OPEN and self._trials_started < self.policy.half_open_calls:
                self._trials_started += 1
                permit = self._generation, now
            else:
                self._rejected += 1
                retry_in = max(self._open_until - now, 0.0) if state is State.OPEN else None
        if changes:
            self._notify(changes)
        if permit is not None:
            return permit
        if self._event_listeners:
            self._emit([BreakerEvent(self.name, BreakerEventKind.NOT_PERMITTED, now)])
        return BreakerOpen(self.name, state, retry_in)

    def record(self, permit: Permit, failed: bool, *, timed: bool = True,
               code: grpc.StatusCode | None = None) -> None:
        """The outcome of a permitted call (`failed` per the failure codes); duration and slowness come
        from the clock, for `timed` calls only (not for streams, which rightly last as long as their
        caller wants). `code`, when known, goes into the call's event."""
        generation, started = permit
        now = self._clock()
        duration = now - started if timed else None
        slow = duration is not None and duration >= self.policy.slow_call_duration
        changes: list[StateChange] = []
        exceeded: list[tuple[BreakerEventKind, float]] = []
        with self._lock:
            if generation == self._generation:  # else: started before the last state change; says nothing now
                if self._state is State.CLOSED or self._state is State.METRICS_ONLY:
                    window = self._window
                    window.record(now, failed, slow, duration)
                    if self._state is State.CLOSED and window.tally.calls >= self._minimum_calls:
                        exceeded = self._exceeded(window.tally)
                        if exceeded:
                            self._open(now, changes)
                elif self._state is State.HALF_OPEN:
                    trials = self._trials
                    trials.add(failed, slow, duration)
                    if trials.calls >= self.policy.half_open_calls:
                        exceeded = self._exceeded(trials)
                        if exceeded:
                            self._open(now, changes)
                        else:
                            self._move(State.CLOSED, now, changes)
        if self._event_listeners:
            kind = BreakerEventKind.ERROR if failed else BreakerEventKind.SUCCESS
            self._emit([BreakerEvent(self.name, kind, now, duration, code),
                        *(BreakerEvent(self.name, k, now, rate=rate) for k, rate in exceeded)])
        self._notify(changes)

    def release(self, permit: Permit) -> None:
        """A permitted call ended without a verdict (cancelled by its caller): give its trial slot back."""
        with self._lock:
            if permit[0] == self._generation and self._state is State.HALF_OPEN:
                self._trials_started = max(self._trials_started - 1, self._trials.calls)

    def ignore(self, permit: Permit, code: grpc.StatusCode | None = None) -> None:
        """A permitted call ended with an ignored status: `release()` it and report IGNORED_ERROR."""
        self.release(permit)
        if self._event_listeners:
            now = self._clock()
            self._emit([BreakerEvent(self.name, BreakerEventKind.IGNORED_ERROR, now, now - permit[1], code)])

    def reset(self) -> None:
        """Back to CLOSED with an empty window (an operator's override)."""
        self._operate(State.CLOSED)
        if self._event_listeners:
            self._emit([BreakerEvent(self.name, BreakerEventKind.RESET, self._clock())])

    def force_open(self) -> None:
        """Refuse every call until `reset()` (an operator's override: take a target out of service)."""
        self._operate(State.FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through and judge none, until `reset()`."""
        self._operate(State.DISABLED)

    def metrics_only(self) -> None:
        """Let every call through and keep the window's metrics (the snapshot shows what would have
        opened it), never opening, until `reset()`."""
        self._operate(State.METRICS_ONLY)

    def open_for(self, seconds: float) -> None:
        """Open now for `seconds`, then let trial calls through as after any opening."""
        changes: list[StateChange] = []
        with self._lock:
            now = self._clock()
            self._open_until = now + seconds
            self._move(State.OPEN, now, changes)
        self._notify(changes)

    def reconfigure(self, policy: BreakerPolicy) -> None:
        """Judge by `policy` from now on, keeping what still applies: the state (an OPEN breaker stays open
        until its wait ends, an operator's state stays), and the window's outcomes when its shape
        (kind and size) is the same; a new shape starts an empty window."""
        with self._lock:
            old, self.policy = self.policy, policy
            if (old.window, old.window_size) != (policy.window, policy.window_size):
                self._window = policy.new_window()
            self._minimum_calls = (
                min(policy.minimum_calls, policy.window_size) if policy.window == "count" else policy.minimum_calls
            )

    def _operate(self, state: State) -> None:
        changes: list[StateChange] = []
        with self._lock:
            self._move(state, self._clock(), changes)
        self._notify(changes)

    def snapshot(self) -> BreakerSnapshot:
        """Current state and counts, for metrics and status pages."""
        state = self.state
        with self._lock:
            now = self._clock()
            if state is State.HALF_OPEN:
                tally = self._trials
            elif state is State.OPEN:  # the outcomes that opened it
                tally = self._opened_with
            else:
                self._window.expire(now)
                tally = self._window.tally
            calls = tally.calls
            return BreakerSnapshot(
                name=self.name,
                state=self._state,
                calls=calls,
                failures=tally.failures,
                slow_calls=tally.slow,
                failure_rate=tally.failures / calls if calls else 0.0,
                slow_call_rate=tally.slow / calls if calls else 0.0,
                rejected=self._rejected,
                retry_in=max(self._open_until - now, 0.0) if self._state is State.OPEN else None,
                slow_failures=tally.slow_failures,
                slow_successes=tally.slow - tally.slow_failures,
                mean_duration=tally.duration / tally.timed if tally.timed else None,
            )

    # --- under the lock ---

    def _exceeded(self, tally: Tally) -> list[tuple[BreakerEventKind, float]]:
        """The rates of `tally` at or past their thresholds (empty: the breaker may stay closed)."""
        # Rates as quotients: `failures >= threshold * calls` carries float error (0.55 * 100 is
        # 55.00000000000001), while 55 / 100 rounds to the very double the literal 0.55 is.
        policy = self.policy
        exceeded = []
        failure_rate = tally.failures / tally.calls
        if failure_rate >= policy.failure_rate_threshold:
            exceeded.append((BreakerEventKind.FAILURE_RATE_EXCEEDED, failure_rate))
        slow_rate = tally.slow / tally.calls
        if slow_rate >= policy.slow_call_rate_threshold:
            exceeded.append((BreakerEventKind.SLOW_CALL_RATE_EXCEEDED, slow_rate))
        return exceeded

    def _maybe_half_open(self, now: float, changes: list[StateChange]) -> None:
        """OPEN past its wait -> HALF_OPEN; HALF_OPEN past `max_wait_in_half_open` without a verdict (its
        trials are long streams, or never end) -> OPEN again."""
        if self._state is State.OPEN and now >= self._open_until:
            self._move(State.HALF_OPEN, now, changes)
            self._half_open_since = now
        elif (self._state is State.HALF_OPEN and self.policy.max_wait_in_half_open is not None
              and now - self._half_open_since >= self.policy.max_wait_in_half_open):
            self._open(now, changes)

    def _open(self, now: float, changes: list[StateChange]) -> None:
        self._opened_with = (self._trials if self._state is State.HALF_OPEN else self._window.tally).copy()
        self._openings += 1
        self._open_until = now + self.policy.open_wait(self._openings)
        self._move(State.OPEN, now, changes)

    def _move(self, new: State, now: float, changes: list[StateChange]) -> None:
        old = self._state
        if new is State.CLOSED:
            self._openings = 0
        self._generation += 1
        self._window.reset()
        self._trials_started = 0
        self._trials = Tally()
        self._state = new
        if new is not old:
            changes.append(StateChange(self.name, old, new, now))

    def _notify(self, changes: list[StateChange]) -> None:
        for change in changes:
            log.info("circuit breaker %s: %s -> %s", change.breaker, change.old.value, change.new.value)
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("circuit breaker listener %r failed", listener)
        if changes and self._event_listeners:
            self._emit([BreakerEvent(self.name, BreakerEventKind.STATE_TRANSITION, c.at, transition=c)
                        for c in changes])

    def _emit(self, events: list[BreakerEvent]) -> None:
        for event in events:
            for listener in self._event_listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("circuit breaker event listener %r failed", listener)


class BreakerRegistry:
    """The breakers of a process (or of one client), one per target name, created on first use.

    Share one registry between channels that should share breakers, and read `snapshot()` for metrics.
    """

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock = time.monotonic,
        listeners: Iterable[Listener] = (),
        event_listeners: Iterable[EventListener] = (),
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._listeners = list(listeners)
        self._event_listeners = list(event_listeners)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._overrides: dict[str, Override] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CircuitBreaker:
        """The breaker for `name` (a service such as "pkg.Orders", or "pkg.Orders@host:port")."""
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    breaker = CircuitBreaker(name, self.policy, self._clock, self._listeners, self._event_listeners)
                    self._breakers[name] = breaker
                    override = _override_for(self._overrides, name)
                else:
                    override = None
            if override is not None:  # an operator's state set before the breaker existed
                override.apply(breaker)
        return breaker

    def reconfigure(self, policy: BreakerPolicy) -> None:
        """Every breaker, present and future, judges by `policy` from now on (see `CircuitBreaker.reconfigure`)."""
        with self._lock:
            self.policy = policy
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.reconfigure(policy)

    def override(self, target: str, override: Override | None) -> None:
        """An operator's state for the breakers of `target` ("pkg.Service", "pkg.Service/Method", or a full
        breaker name): applied now to those that exist and to those created later; None lets go of it
        (the breakers are reset)."""
        with self._lock:
            if override is None:
                self._overrides.pop(target, None)
            else:
                self._overrides[target] = override
            matching = [b for name, b in self._breakers.items() if _matches(target, name)]
        for breaker in matching:
            (override or Override("closed")).apply(breaker)

    def add_listener(self, listener: Listener) -> None:
        """Listen to the state changes of every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            for breaker in self._breakers.values():
                breaker.add_listener(listener)

    def add_event_listener(self, listener: EventListener) -> None:
        """Listen to the events of every breaker, present and future (see `CircuitBreaker.add_event_listener`)."""
        with self._lock:
            self._event_listeners.append(listener)
            for breaker in self._breakers.values():
                breaker.add_event_listener(listener)

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """Metrics of every breaker, by name."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.snapshot() for b in breakers}


@dataclass(frozen=True)
class Override:
    """An operator's say over breakers: "forced_open", "disabled", "metrics_only", "open" (for `seconds`,
    then trial calls as after any opening) or "closed" (a reset)."""

    state: Literal["forced_open", "disabled", "metrics_only", "open", "closed"]
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.state not in ("forced_open", "disabled", "metrics_only", "open", "closed"):
            raise ValueError(f"breaker override state must be forced_open, disabled, metrics_only, open or closed, "
                             f"got {self.state!r}")
        if self.state == "open" and (self.seconds is None or not 0 < self.seconds <= 86_400):
            raise ValueError(f"an 'open' override needs seconds in (0, 86400], got {self.seconds!r}")

    def apply(self, breaker: CircuitBreaker) -> None:
        if self.state == "forced_open":
            breaker.force_open()
        elif self.state == "disabled":
            breaker.disable()
        elif self.state == "metrics_only":
            breaker.metrics_only()
        elif self.state == "open":
            breaker.open_for(self.seconds or 0.0)
        else:
            breaker.reset()


def _matches(target: str, name: str) -> bool:
    """Whether breaker `name` ("svc", "svc/Method", either with "@instance") is one of `target`'s."""
    return name == target or name.startswith((f"{target}@", f"{target}/"))


def _override_for(overrides: Mapping[str, Override], name: str) -> Override | None:
    # The most specific target wins: "svc/Method@host" over "svc/Method" over "svc".
    found = [(len(target), o) for target, o in overrides.items() if _matches(target, name)]
    return max(found, key=lambda pair: pair[0])[1] if found else None


def breaker_key(service: str, instance: str | None) -> str:
    """The breaker name of a target: the service (or "service/Method" when kept per method), with
    "@instance" when breakers are per instance."""
    return service if instance is None else f"{service}@{instance}"


def call_target(call: OutgoingCall, per: str) -> str:
    """What a breaker or bulkhead of a call is kept for: "pkg.Service", or "pkg.Service/Method"."""
    return call.method.lstrip("/") if per == "method" else call.service


class BreakerConcern(ClientConcern):
    """Client side: refuses calls while the target's breaker is open and reports every final status to it.

    instance: the address this channel talks to; when set, breakers are kept per (service, instance).
    """

    def __init__(self, registry: BreakerRegistry | None = None, instance: str | None = None) -> None:
        self.registry = registry or BreakerRegistry()
        self._instance = instance
        self._breakers: dict[str, CircuitBreaker] = {}
        self.off = False
        self._take(self.registry.policy)

    def _take(self, policy: BreakerPolicy) -> None:
        self._failure_codes = policy.failure_codes
        self._ignored_codes = policy.ignored_codes
        self._failure_predicate = policy.failure_predicate
        self._ignore_predicate = policy.ignore_predicate
        self._per = policy.per

    def follow(self, policy: Any) -> None:
        """Follow the `breaker` section of a changed `ClientPolicy` (see `LivePolicy`)."""
        self.update(policy.breaker)

    def update(self, policy: BreakerPolicy | None) -> None:
        """Follow a changed policy (its registry is reconfigured by whoever owns it); None: let every call
        through unjudged until a policy comes back."""
        self.off = policy is None
        if policy is not None:
            self._take(policy)

    def judge(self, outcome: Outcome) -> bool | None:
        """True: a failure; False: a success; None: ignored (counted neither way)."""
        code = outcome.code
        if code in self._ignored_codes or (self._ignore_predicate is not None and self._ignore_predicate(outcome)):
            return None
        if code in self._failure_codes:
            return True
        return self._failure_predicate is not None and bool(self._failure_predicate(outcome))

    def start(self, call: OutgoingCall) -> _BreakerScope | None:
        if self.off:
            return None
        target = call_target(call, self._per)
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = self.registry.get(breaker_key(target, self._instance))
        answer = breaker.try_acquire()
        if not isinstance(answer, BreakerOpen):
            return _BreakerScope(self, breaker, answer, not call.streaming)
        metadata: tuple[tuple[str, str], ...] = ((BREAKER_STATE_KEY, answer.state.value),)
        if answer.retry_in is not None:
            metadata += ((BREAKER_RETRY_AFTER_KEY, str(round(answer.retry_in * 1000))),)
        raise Rejection(grpc.StatusCode.UNAVAILABLE, answer.message, metadata, cause=answer)


class _BreakerScope:
    """One permitted call: its outcome is recorded (or its permit given back) when it ends."""

    __slots__ = ("_breaker", "_concern", "_permit", "_timed")

    def __init__(self, concern: BreakerConcern, breaker: CircuitBreaker, permit: Permit, timed: bool) -> None:
        self._concern = concern
        self._breaker = breaker
        self._permit = permit
        self._timed = timed

    def end(self, outcome: Outcome) -> None:
        failed = self._concern.judge(outcome)
        if failed is None:
            self._breaker.ignore(self._permit, outcome.code)
        else:
            self._breaker.record(self._permit, failed, timed=self._timed, code=outcome.code)


def client_interceptor(registry: BreakerRegistry | None = None, instance: str | None = None) -> ClientInterceptor:
    """Circuit breaking alone, for `grpc.intercept_channel(channel, client_interceptor(registry))`."""
    return ClientInterceptor([BreakerConcern(registry, instance)])


def aio_client_interceptors(
    registry: BreakerRegistry | None = None, instance: str | None = None
) -> list[grpc.aio.ClientInterceptor]:
    """Circuit breaking alone, for `grpc.aio.insecure_channel(target, interceptors=...)`."""
    return aio_client_chain([BreakerConcern(registry, instance)])
