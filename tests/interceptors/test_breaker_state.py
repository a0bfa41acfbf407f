"""The breaker's state machine and windows, driven by a fake clock: no network, no sleeping."""

from __future__ import annotations

import threading

import grpc
import pytest

from controlplane.interceptors import BreakerOpen, BreakerPolicy, BreakerRegistry, CircuitBreaker, State

from .servers import FakeClock

POLICY = BreakerPolicy(
    failure_rate_threshold=0.5, minimum_calls=4, window_size=10, wait_in_open=30.0, half_open_calls=2
)


def run(breaker: CircuitBreaker, outcomes: str, clock: FakeClock | None = None, duration: float = 0.0) -> None:
    """Record calls: 'f' failed, 'o' ok; each takes `duration` seconds on `clock`."""
    for outcome in outcomes:
        permit = breaker.acquire()
        if clock is not None:
            clock.advance(duration)
        breaker.record(permit, failed=outcome == "f")


def opened(clock: FakeClock, policy: BreakerPolicy = POLICY) -> CircuitBreaker:
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "ffff")
    assert breaker.state is State.OPEN
    return breaker


def test_breaker_stays_closed_before_minimum_calls_even_if_all_failed(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", POLICY, clock)
    run(breaker, "fff")
    assert breaker.state is State.CLOSED


def test_breaker_opens_when_failure_rate_reaches_threshold(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", POLICY, clock)
    run(breaker, "oof")
    assert breaker.state is State.CLOSED
    run(breaker, "f")  # 2 of 4 failed: 50% >= 50%
    assert breaker.state is State.OPEN


def test_breaker_stays_closed_below_failure_rate(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", POLICY, clock)
    run(breaker, "ooofooof")
    assert breaker.state is State.CLOSED


def test_count_window_forgets_calls_older_than_its_size(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", BreakerPolicy(minimum_calls=4, window_size=4, failure_rate_threshold=0.75), clock)
    run(breaker, "ffoo")  # 50%
    run(breaker, "oo")  # the two failures slid out
    assert breaker.snapshot().failures == 0
    run(breaker, "fff")
    assert breaker.state is State.OPEN


def test_time_window_forgets_calls_older_than_its_seconds(clock: FakeClock) -> None:
    policy = BreakerPolicy(window="time", window_size=10, minimum_calls=4, failure_rate_threshold=0.5)
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "fff")
    clock.advance(11)  # the three failures fall out of the 10-second window
    run(breaker, "ooof")
    assert breaker.snapshot().calls == 4
    assert breaker.state is State.CLOSED
    clock.advance(3)
    run(breaker, "ff")  # 3 of 6 within the last 10 s
    assert breaker.state is State.OPEN


def test_slow_calls_open_the_breaker_even_when_they_succeed(clock: FakeClock) -> None:
    policy = BreakerPolicy(slow_call_duration=2.0, slow_call_rate_threshold=0.5, minimum_calls=4)
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "oo", clock, duration=0.1)
    run(breaker, "o", clock, duration=2.5)
    assert breaker.state is State.CLOSED
    run(breaker, "o", clock, duration=3.0)
    assert breaker.state is State.OPEN
    assert breaker.snapshot().state is State.OPEN


def test_open_breaker_refuses_and_says_when_it_will_try_again(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(10)
    with pytest.raises(BreakerOpen) as refused:
        breaker.acquire()
    assert refused.value.state is State.OPEN
    assert refused.value.retry_in == pytest.approx(20.0)
    assert breaker.snapshot().rejected == 1


def test_open_breaker_turns_half_open_after_its_wait(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(29.9)
    assert breaker.state is State.OPEN
    clock.advance(0.1)
    assert breaker.state is State.HALF_OPEN


def test_half_open_breaker_lets_only_its_trial_calls_through(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(30)
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(BreakerOpen) as refused:
        breaker.acquire()
    assert refused.value.state is State.HALF_OPEN
    assert refused.value.retry_in is None


def test_half_open_breaker_closes_when_trial_calls_succeed(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(30)
    run(breaker, "o")
    assert breaker.state is State.HALF_OPEN  # one trial of two is not a verdict
    run(breaker, "o")
    assert breaker.state is State.CLOSED
    assert breaker.snapshot().calls == 0  # a fresh window


def test_half_open_breaker_reopens_when_trial_calls_fail(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(30)
    run(breaker, "of")  # 1 of 2 failed: 50% >= 50%
    assert breaker.state is State.OPEN
    assert breaker.snapshot().retry_in == pytest.approx(30.0)


def test_cancelled_trial_call_gives_its_slot_back(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.advance(30)
    first = breaker.acquire()
    breaker.acquire()
    breaker.release(first)
    breaker.acquire()  # the released slot is free again


def test_outcomes_of_calls_started_before_a_state_change_are_ignored(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", POLICY, clock)
    late = breaker.acquire()
    run(breaker, "ffff")
    clock.advance(30)
    assert breaker.state is State.HALF_OPEN
    breaker.record(late, failed=True)  # started while CLOSED: no verdict on the trial
    assert breaker.state is State.HALF_OPEN
    assert breaker.snapshot().calls == 0


def test_listeners_hear_every_state_change_in_order(clock: FakeClock) -> None:
    changes = []
    breaker = CircuitBreaker("svc", POLICY, clock, listeners=[changes.append])
    run(breaker, "ffff")
    clock.advance(30)
    run(breaker, "oo")
    assert [(c.old, c.new) for c in changes] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    assert changes[0].at == 1000.0 and changes[1].at == 1030.0
    assert {c.breaker for c in changes} == {"svc"}


def test_failing_listener_does_not_break_the_breaker(clock: FakeClock) -> None:
    def broken(change: object) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("svc", POLICY, clock, listeners=[broken])
    run(breaker, "ffff")
    assert breaker.state is State.OPEN


def test_snapshot_reports_window_counts_rates_and_rejections(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", BreakerPolicy(minimum_calls=10, slow_call_duration=1.0), clock)
    run(breaker, "ofo", clock, duration=0.5)
    run(breaker, "o", clock, duration=1.5)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures, snap.slow_calls) == (State.CLOSED, 4, 1, 1)
    assert snap.failure_rate == 0.25 and snap.slow_call_rate == 0.25
    assert snap.rejected == 0 and snap.retry_in is None


def test_registry_keeps_one_breaker_per_target_and_snapshots_all(clock: FakeClock) -> None:
    registry = BreakerRegistry(POLICY, clock=clock)
    assert registry.get("a") is registry.get("a")
    run(registry.get("a"), "ffff")
    run(registry.get("b"), "oooo")
    snapshot = registry.snapshot()
    assert snapshot["a"].state is State.OPEN and snapshot["b"].state is State.CLOSED


def test_registry_listener_hears_breakers_created_before_and_after(clock: FakeClock) -> None:
    registry = BreakerRegistry(POLICY, clock=clock)
    early = registry.get("early")
    heard = []
    registry.add_listener(lambda change: heard.append(change.breaker))
    run(early, "ffff")
    run(registry.get("late"), "ffff")
    assert heard == ["early", "late"]


def test_breaker_counts_stay_exact_under_many_threads(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", BreakerPolicy(window_size=10_000, minimum_calls=10_000), clock)
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        run(breaker, "of" * 500)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (8000, 4000)


def test_wait_in_open_doubles_while_trials_fail_and_starts_again_after_closing(clock: FakeClock) -> None:
    policy = BreakerPolicy(minimum_calls=2, window_size=2, half_open_calls=1, wait_in_open=1.0,
                           wait_multiplier=2.0, max_wait_in_open=5.0)
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "ff")
    waits = []
    for _ in range(5):  # each trial fails: the breaker opens again, for longer, up to the cap
        waits.append(breaker.snapshot().retry_in)
        clock.advance(waits[-1])
        assert breaker.state is State.HALF_OPEN
        run(breaker, "f")
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    clock.advance(5.0)
    run(breaker, "o")  # a trial succeeds: closed, and the next opening waits the first wait again
    assert breaker.state is State.CLOSED
    run(breaker, "ff")
    assert breaker.snapshot().retry_in == 1.0


def test_max_wait_below_the_first_wait_does_not_shorten_it() -> None:
    assert BreakerPolicy(wait_in_open=60.0).open_wait(1) == 60.0
    assert BreakerPolicy(wait_in_open=60.0).open_wait(3) == 60.0
    with pytest.raises(ValueError, match="wait_multiplier"):
        BreakerPolicy(wait_multiplier=0.5)


@pytest.mark.parametrize("threshold", [0.07, 0.14, 0.28, 0.55, 0.56, 0.5, 0.29, 0.57])
def test_a_failure_rate_exactly_at_the_threshold_opens_and_in_half_open_reopens(clock: FakeClock,
                                                                                threshold: float) -> None:
    failures = round(threshold * 100)
    policy = BreakerPolicy(failure_rate_threshold=threshold, minimum_calls=100, window_size=100, half_open_calls=100)
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "o" * (100 - failures + 1) + "f" * (failures - 1))
    assert breaker.state is State.CLOSED  # one failure short of the rate
    run(breaker, "f")  # the window slides past an "o": exactly `failures` of 100
    assert breaker.state is State.OPEN
    clock.advance(breaker.snapshot().retry_in)
    run(breaker, "f" * failures + "o" * (100 - failures))  # trials exactly at the rate: open again
    assert breaker.state is State.OPEN


@pytest.mark.parametrize("threshold", [0.07, 0.55, 0.56])
def test_a_slow_call_rate_exactly_at_the_threshold_opens(clock: FakeClock, threshold: float) -> None:
    slow = round(threshold * 100)
    policy = BreakerPolicy(slow_call_rate_threshold=threshold, slow_call_duration=1.0, minimum_calls=100,
                           window_size=100)
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "o" * (100 - slow))
    run(breaker, "o" * slow, clock, duration=1.0)
    assert breaker.state is State.OPEN


def concern_calls(policy: BreakerPolicy, clock: FakeClock, calls: list[tuple[str, grpc.StatusCode]]) -> list[bool]:
    """Run calls (method, final status) through one BreakerConcern; whether each was let through."""
    from controlplane.interceptors.breaker import BreakerConcern
    from controlplane.interceptors.call import CallKind, Outcome, OutgoingCall, Rejection

    concern = BreakerConcern(BreakerRegistry(policy, clock=clock))
    allowed = []
    for method, code in calls:
        call = OutgoingCall(f"/pkg.S/{method}", CallKind.UNARY_UNARY, None)
        try:
            scope = concern.start(call)
        except Rejection:
            allowed.append(False)
            continue
        allowed.append(True)
        scope.end(Outcome(code))
    return allowed


def test_breakers_per_method_keep_healthy_methods_of_a_failing_service_open(clock: FakeClock) -> None:
    down = [("Broken", grpc.StatusCode.UNAVAILABLE)] * 2 + [("Broken", grpc.StatusCode.OK),
                                                            ("Fine", grpc.StatusCode.OK)]
    per_method = BreakerPolicy(minimum_calls=2, window_size=2, per="method")
    per_service = BreakerPolicy(minimum_calls=2, window_size=2)

    assert concern_calls(per_method, clock, down) == [True, True, False, True]
    assert concern_calls(per_service, clock, down) == [True, True, False, False]  # the default: one per service


def test_ignored_codes_count_neither_way(clock: FakeClock) -> None:
    policy = BreakerPolicy(minimum_calls=2, window_size=2,
                           ignored_codes=frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.NOT_FOUND}))
    calls = [("M", grpc.StatusCode.UNAVAILABLE), ("M", grpc.StatusCode.NOT_FOUND), ("M", grpc.StatusCode.NOT_FOUND),
             ("M", grpc.StatusCode.UNAVAILABLE), ("M", grpc.StatusCode.OK)]

    assert concern_calls(policy, clock, calls) == [True, True, True, True, False]  # two failures of two judged
    with pytest.raises(ValueError, match="both a failure and ignored"):
        BreakerPolicy(ignored_codes=frozenset({grpc.StatusCode.UNAVAILABLE}))
    assert BreakerPolicy.from_dict({"ignored_codes": ["not_found"], "per": "method"}).ignored_codes == frozenset(
        {grpc.StatusCode.NOT_FOUND})


def test_operator_states_force_open_disable_metrics_only_open_for_and_reset(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", BreakerPolicy(minimum_calls=2, window_size=2, wait_in_open=1.0), clock)
    breaker.force_open()
    with pytest.raises(BreakerOpen, match="forced open"):
        breaker.acquire()
    clock.advance(3600)
    assert breaker.state is State.FORCED_OPEN  # no wait ends it: only an operator does

    breaker.disable()
    run(breaker, "ffff")  # every call through, none judged
    assert (breaker.state, breaker.snapshot().calls) == (State.DISABLED, 0)

    breaker.metrics_only()
    run(breaker, "ff")  # judged into the window, but it never opens
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.failures, snapshot.failure_rate) == (State.METRICS_ONLY, 2, 1.0)

    breaker.open_for(5.0)
    assert breaker.snapshot().retry_in == 5.0
    clock.advance(5.0)
    assert breaker.state is State.HALF_OPEN

    breaker.reset()
    run(breaker, "ff")
    assert breaker.state is State.OPEN  # back to normal judging


def test_an_open_breaker_reports_the_rates_that_opened_it(clock: FakeClock) -> None:
    breaker = CircuitBreaker("svc", BreakerPolicy(minimum_calls=4, window_size=4, failure_rate_threshold=0.75), clock)
    run(breaker, "offf")
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.calls, snapshot.failures, snapshot.failure_rate) == (State.OPEN, 4, 3, 0.75)


def test_half_open_without_a_verdict_opens_again_after_its_cap(clock: FakeClock) -> None:
    policy = BreakerPolicy(minimum_calls=2, window_size=2, half_open_calls=1, wait_in_open=1.0,
                           max_wait_in_half_open=5.0)
    breaker = CircuitBreaker("svc", policy, clock)
    run(breaker, "ff")
    clock.advance(1.0)
    trial = breaker.acquire()  # a trial that never ends (a stream)
    clock.advance(4.9)
    assert breaker.state is State.HALF_OPEN
    clock.advance(0.1)
    assert breaker.state is State.OPEN
    breaker.record(trial, failed=False)  # its late verdict belongs to an older generation: ignored
    assert breaker.state is State.OPEN
