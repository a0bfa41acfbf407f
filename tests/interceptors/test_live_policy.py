"""Live client policies: running interceptors follow a changed policy, keeping breaker state that still applies."""

from __future__ import annotations

import asyncio
import gc

import grpc
import pytest

from controlplane.interceptors import (
    BreakerOpen,
    BreakerPolicy,
    BulkheadPolicy,
    ClientPolicy,
    DeadlinePolicy,
    LivePolicy,
    State,
    client_interceptors,
)
from controlplane.interceptors.bulkhead import Bulkhead

from .servers import UNARY, Behavior, FakeClock, sync_served

OPENS_AT_ONCE = BreakerPolicy(minimum_calls=1, window_size=1, wait_in_open=3600)


def test_a_new_default_deadline_applies_to_the_next_call_of_a_running_channel(behavior: Behavior) -> None:
    live = LivePolicy(ClientPolicy(deadlines=DeadlinePolicy(default_timeout=30)))
    with sync_served(behavior, client_interceptors(live, tracing=False)) as channel:
        unary = channel.unary_unary(UNARY)
        unary(b"x")
        live.update(ClientPolicy(deadlines=DeadlinePolicy(default_timeout=1.5)))
        unary(b"x")
        live.update(ClientPolicy(deadlines=None))
        unary(b"x")
    first, second, third = behavior.time_remaining
    wire = 1.01  # gRPC rounds the timeout it sends up, by up to 1%
    assert 29 < first <= 30 * wire
    assert 1 < second <= 1.5 * wire
    assert third is None or third > 1e6  # no deadline


def test_an_open_breaker_stays_open_when_another_section_changes(behavior: Behavior, clock: FakeClock) -> None:
    live = LivePolicy(ClientPolicy(breaker=OPENS_AT_ONCE), clock=clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE
    with sync_served(behavior, client_interceptors(live, tracing=False)) as channel:
        unary = channel.unary_unary(UNARY)
        with pytest.raises(grpc.RpcError):
            unary(b"x")
        live.update(ClientPolicy(breaker=OPENS_AT_ONCE, bulkhead=BulkheadPolicy(max_concurrent=3),
                                 deadlines=DeadlinePolicy(default_timeout=5)))
        with pytest.raises(grpc.RpcError) as refused:
            unary(b"x")
    assert isinstance(refused.value.cause, BreakerOpen)  # type: ignore[attr-defined]
    assert behavior.calls == 1
    assert live.breakers.get("test.Echo").state is State.OPEN


def test_new_thresholds_judge_the_outcomes_already_in_a_window_of_the_same_shape(clock: FakeClock) -> None:
    live = LivePolicy(ClientPolicy(breaker=BreakerPolicy(window_size=10, minimum_calls=4, failure_rate_threshold=0.9)),
                      clock=clock)
    breaker = live.breakers.get("svc")
    for failed in (True, False, True, False):
        breaker.record(breaker.acquire(), failed)
    assert breaker.state is State.CLOSED
    live.update(ClientPolicy(breaker=BreakerPolicy(window_size=10, minimum_calls=4, failure_rate_threshold=0.5)))
    assert breaker.snapshot().calls == 4  # kept
    breaker.record(breaker.acquire(), True)  # 3 of 5 failed, judged by the new threshold
    assert breaker.state is State.OPEN


def test_a_window_of_another_shape_starts_empty(clock: FakeClock) -> None:
    live = LivePolicy(ClientPolicy(breaker=BreakerPolicy(window_size=10, minimum_calls=4)), clock=clock)
    breaker = live.breakers.get("svc")
    for _ in range(3):
        breaker.record(breaker.acquire(), True)
    live.update(ClientPolicy(breaker=BreakerPolicy(window="time", window_size=10, minimum_calls=4)))
    assert breaker.snapshot().calls == 0


def test_switching_the_breaker_off_lets_calls_through_an_open_breaker(behavior: Behavior, clock: FakeClock) -> None:
    live = LivePolicy(ClientPolicy(breaker=OPENS_AT_ONCE), clock=clock)
    behavior.fail_first = [grpc.StatusCode.UNAVAILABLE]
    with sync_served(behavior, client_interceptors(live, tracing=False)) as channel:
        unary = channel.unary_unary(UNARY)
        with pytest.raises(grpc.RpcError):
            unary(b"x")
        live.update(ClientPolicy(breaker=None))
        assert unary(b"x") == b"x"
    assert behavior.calls == 2


def test_a_higher_bulkhead_cap_lets_a_waiting_caller_in_at_once() -> None:
    async def scenario() -> bool:
        bulkhead = Bulkhead("svc", BulkheadPolicy(max_concurrent=1))
        assert bulkhead.try_acquire()
        waiting = asyncio.ensure_future(bulkhead.acquire_async(60))
        await asyncio.sleep(0)  # the waiter is queued
        bulkhead.reconfigure(BulkheadPolicy(max_concurrent=2))
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(scenario())


def test_an_operator_state_applies_once_per_change_and_lifting_it_resets(clock: FakeClock) -> None:
    live = LivePolicy(clock=clock)
    breaker = live.breakers.get("pkg.Pay@10.0.0.1:1")
    forced = {"pkg.Pay": {"state": "forced_open", "at": "t1"}}
    live.apply_overrides(forced)
    assert breaker.state is State.FORCED_OPEN
    assert live.breakers.get("pkg.Pay@10.0.0.2:1").state is State.FORCED_OPEN  # created afterwards
    assert live.breakers.get("pkg.Other").state is State.CLOSED
    breaker.reset()
    live.apply_overrides(forced)  # the same document again (a reconnect, another key changed): no re-apply
    assert breaker.state is State.CLOSED
    live.apply_overrides({"pkg.Pay": {"state": "forced_open", "at": "t2"}})  # the command given again
    assert breaker.state is State.FORCED_OPEN
    live.apply_overrides({})
    assert breaker.state is State.CLOSED


def test_open_for_opens_for_its_seconds_then_lets_trial_calls_through(clock: FakeClock) -> None:
    live = LivePolicy(clock=clock)
    breaker = live.breakers.get("pkg.Pay")
    live.apply_overrides({"pkg.Pay": {"state": "open", "seconds": 30}})
    assert breaker.state is State.OPEN
    clock.advance(30)
    assert breaker.state is State.HALF_OPEN


def test_the_most_specific_override_wins_for_breakers_created_later(clock: FakeClock) -> None:
    live = LivePolicy(ClientPolicy(breaker=BreakerPolicy(per="method")), clock=clock)
    live.apply_overrides({"pkg.Pay": {"state": "forced_open"}, "pkg.Pay/Get": {"state": "disabled"}})
    assert live.breakers.get("pkg.Pay/Get").state is State.DISABLED
    assert live.breakers.get("pkg.Pay/Charge").state is State.FORCED_OPEN


def test_a_section_that_does_not_parse_changes_nothing(clock: FakeClock) -> None:
    live = LivePolicy(ClientPolicy(deadlines=DeadlinePolicy(default_timeout=3)), clock=clock)
    for section in ({"deadlines": {"default_timeout": -1}},
                    {"breaker": {"failure_rate_threshold": 0.5}, "breaker_overrides": {"pkg.S": {"state": "melted"}}},
                    {"unknown": 1}):
        with pytest.raises((ValueError, TypeError)):
            live.apply_section(section)
    assert live.policy.deadlines == DeadlinePolicy(default_timeout=3)
    assert live.breakers.get("pkg.S").state is State.CLOSED


def test_interceptors_that_are_dropped_stop_following() -> None:
    live = LivePolicy()
    interceptors = client_interceptors(live, tracing=False)
    live.update(ClientPolicy())
    assert len(live._listeners) == 3  # bulkhead, deadlines, breaker
    del interceptors
    gc.collect()
    live.update(ClientPolicy())
    assert live._listeners == []


@pytest.mark.parametrize("target", ["", "pkg S", "pkg.S\n", "a" * 400, "/pkg.S", "pkg.S/", "pkg.S/Get/More",
                                    "pkg.\u202eS"])
def test_an_override_for_what_is_not_a_breaker_target_is_refused_and_changes_nothing(target: str,
                                                                                    clock: FakeClock) -> None:
    live = LivePolicy(clock=clock)
    breaker = live.breakers.get("pkg.S")
    with pytest.raises(ValueError, match="breaker target"):
        live.apply_section({"breaker_overrides": {"pkg.S": {"state": "forced_open"}, target: {"state": "disabled"}}})
    assert breaker.state is State.CLOSED
