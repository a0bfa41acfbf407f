"""Circuit breaking on real loopback calls, sync and asyncio. The breaker's clock is fake: no sleeping."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from controlplane.interceptors import (
    BREAKER_RETRY_AFTER_KEY,
    BREAKER_STATE_KEY,
    BreakerPolicy,
    BreakerRegistry,
    ClientPolicy,
    DeadlinePolicy,
    State,
    aio_client_interceptors,
    client_interceptors,
)

from .servers import (
    BIDI,
    SERVER_STREAM,
    SERVICE,
    UNARY,
    Behavior,
    FakeClock,
    aio_eventually,
    aio_served,
    dead_address,
    eventually,
    sync_channel,
    sync_server,
    trailing,
)

POLICY = BreakerPolicy(minimum_calls=3, window_size=3, wait_in_open=30.0, half_open_calls=2)


def breakers(clock: FakeClock, policy: BreakerPolicy = POLICY) -> BreakerRegistry:
    return BreakerRegistry(policy, clock=clock)


def interceptors(registry: BreakerRegistry, **kwargs: object) -> list:
    return client_interceptors(ClientPolicy(), tracing=False, breakers=registry, **kwargs)  # type: ignore[arg-type]


def aio_interceptors(registry: BreakerRegistry) -> list:
    return aio_client_interceptors(ClientPolicy(), tracing=False, breakers=registry)


def fail_sync(callable_: grpc.UnaryUnaryMultiCallable, times: int) -> list[grpc.RpcError]:
    errors = []
    for _ in range(times):
        with pytest.raises(grpc.RpcError) as error:
            callable_(b"x", timeout=5)
        errors.append(error.value)
    return errors


# --- sync --------------------------------------------------------------------------------------------


def test_dead_server_opens_the_breaker_and_then_calls_fail_fast(clock: FakeClock) -> None:
    registry = breakers(clock)
    with sync_channel(dead_address(), interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        errors = fail_sync(unary, 3)
        assert all(e.code() is grpc.StatusCode.UNAVAILABLE for e in errors)
        assert all(BREAKER_STATE_KEY not in trailing(e) for e in errors)  # these reached the network
        (refused,) = fail_sync(unary, 1)
    assert refused.code() is grpc.StatusCode.UNAVAILABLE
    assert trailing(refused)[BREAKER_STATE_KEY] == "open"
    assert registry.snapshot()[SERVICE].state is State.OPEN


def test_open_breaker_rejects_without_calling_the_server(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        fail_sync(unary, 3)
        assert behavior.calls == 3
        clock.advance(12.5)
        (refused,) = fail_sync(unary, 1)
        assert behavior.calls == 3
    assert "circuit breaker 'test.Echo' is open" in refused.details()
    assert trailing(refused) == {BREAKER_STATE_KEY: "open", BREAKER_RETRY_AFTER_KEY: "17500"}
    assert registry.snapshot()[SERVICE].rejected == 1


def test_client_errors_do_not_open_the_breaker(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_first = [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND] * 3
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        errors = fail_sync(channel.unary_unary(UNARY), 6)
    assert {e.code() for e in errors} == {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert behavior.calls == 6
    assert registry.snapshot()[SERVICE].state is State.CLOSED


def test_flapping_server_is_trusted_again_after_successful_half_open_trials(
    behavior: Behavior, clock: FakeClock
) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        fail_sync(unary, 3)
        behavior.fail_with = None  # the server recovers while the breaker is open
        fail_sync(unary, 1)
        clock.advance(30)
        assert registry.get(SERVICE).state is State.HALF_OPEN
        assert unary(b"trial 1") == b"trial 1"
        assert registry.get(SERVICE).state is State.HALF_OPEN
        assert unary(b"trial 2") == b"trial 2"
        assert registry.get(SERVICE).state is State.CLOSED
        assert unary(b"after") == b"after"
    assert behavior.calls == 6


def test_flapping_server_that_fails_its_half_open_trials_opens_the_breaker_again(
    behavior: Behavior, clock: FakeClock
) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.INTERNAL
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        fail_sync(unary, 3)
        clock.advance(30)
        trials = fail_sync(unary, 2)
        assert all(e.code() is grpc.StatusCode.INTERNAL for e in trials)  # the trials reached the server
        assert registry.get(SERVICE).state is State.OPEN
        (refused,) = fail_sync(unary, 1)
    assert trailing(refused)[BREAKER_RETRY_AFTER_KEY] == "30000"
    assert behavior.calls == 5


def test_slow_server_opens_the_breaker_through_the_slow_call_rate(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock, BreakerPolicy(minimum_calls=3, window_size=3, slow_call_duration=2.0))
    behavior.on_call = lambda request, context: clock.advance(2.5)  # each call takes 2.5 s on the breaker's clock
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        unary = channel.unary_unary(UNARY)
        for _ in range(3):
            assert unary(b"slow but fine") == b"slow but fine"
        snap = registry.snapshot()[SERVICE]
        fail_sync(unary, 1)
    assert (snap.state, snap.slow_calls, snap.failures) == (State.OPEN, 3, 0)  # the outcomes that opened it
    assert behavior.calls == 3


def test_server_that_misses_deadlines_opens_the_breaker(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.gate = threading.Event()  # the server never answers on its own
    policy = ClientPolicy(deadlines=DeadlinePolicy(default_timeout=0.1))
    chain = client_interceptors(policy, tracing=False, breakers=registry)
    with sync_server(behavior) as address, sync_channel(address, chain) as channel:
        unary = channel.unary_unary(UNARY)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as error:
                unary(b"x")
            assert error.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert registry.get(SERVICE).state is State.OPEN


def test_streams_are_judged_by_their_final_status(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                list(channel.unary_stream(SERVER_STREAM)(b"x", timeout=5))
        with pytest.raises(grpc.RpcError):
            list(channel.stream_stream(BIDI)(iter([b"x"]), timeout=5))
        eventually(lambda: registry.get(SERVICE).state is State.OPEN, "the breaker opens")
        refused = channel.unary_stream(SERVER_STREAM)(b"x")
        with pytest.raises(grpc.RpcError):
            next(refused)
    assert refused.code() is grpc.StatusCode.UNAVAILABLE
    assert trailing(refused)[BREAKER_STATE_KEY] == "open"
    assert behavior.calls == 3


def test_successful_streams_count_as_successes(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    with sync_server(behavior) as address, sync_channel(address, interceptors(registry)) as channel:
        for _ in range(3):
            assert list(channel.unary_stream(SERVER_STREAM)(b"x", timeout=5)) == [b"x", b"x"]
        eventually(lambda: registry.get(SERVICE).snapshot().calls == 3, "three outcomes recorded")
    assert registry.get(SERVICE).snapshot().failures == 0


def test_breakers_can_be_kept_per_instance(clock: FakeClock) -> None:
    registry = breakers(clock)
    sick, healthy = Behavior(), Behavior()
    sick.fail_with = grpc.StatusCode.UNAVAILABLE
    with sync_server(sick) as sick_address, sync_server(healthy) as healthy_address:
        with sync_channel(sick_address, interceptors(registry, instance=sick_address)) as channel:
            fail_sync(channel.unary_unary(UNARY), 3)
        with sync_channel(healthy_address, interceptors(registry, instance=healthy_address)) as channel:
            assert channel.unary_unary(UNARY)(b"ok") == b"ok"
    states = {name: snap.state for name, snap in registry.snapshot().items()}
    assert states == {f"{SERVICE}@{sick_address}": State.OPEN, f"{SERVICE}@{healthy_address}": State.CLOSED}


# --- asyncio -----------------------------------------------------------------------------------------


async def fail_aio(callable_: grpc.aio.UnaryUnaryMultiCallable, times: int) -> list[grpc.aio.AioRpcError]:
    errors = []
    for _ in range(times):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await callable_(b"x", timeout=5)
        errors.append(error.value)
    return errors


def test_aio_dead_server_opens_the_breaker_and_then_calls_fail_fast(clock: FakeClock) -> None:
    registry = breakers(clock)

    async def main() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(dead_address(), interceptors=aio_interceptors(registry)) as channel:
            unary = channel.unary_unary(UNARY)
            await fail_aio(unary, 3)
            (refused,) = await fail_aio(unary, 1)
            return refused

    refused = asyncio.run(main())
    assert refused.code() is grpc.StatusCode.UNAVAILABLE
    assert trailing(refused)[BREAKER_STATE_KEY] == "open"


def test_aio_open_breaker_rejects_without_calling_the_server(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE

    async def main() -> grpc.aio.AioRpcError:
        async with aio_served(behavior, aio_interceptors(registry)) as channel:
            unary = channel.unary_unary(UNARY)
            await fail_aio(unary, 3)
            (refused,) = await fail_aio(unary, 1)
            return refused

    refused = asyncio.run(main())
    assert trailing(refused) == {BREAKER_STATE_KEY: "open", BREAKER_RETRY_AFTER_KEY: "30000"}
    assert behavior.calls == 3


def test_aio_half_open_trials_close_the_breaker_when_the_server_recovered(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE

    async def main() -> None:
        async with aio_served(behavior, aio_interceptors(registry)) as channel:
            unary = channel.unary_unary(UNARY)
            await fail_aio(unary, 3)
            behavior.fail_with = None
            clock.advance(30)
            assert await unary(b"trial 1") == b"trial 1"
            assert await unary(b"trial 2") == b"trial 2"

    asyncio.run(main())
    assert registry.get(SERVICE).state is State.CLOSED


def test_aio_half_open_trials_that_fail_open_the_breaker_again(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE

    async def main() -> None:
        async with aio_served(behavior, aio_interceptors(registry)) as channel:
            unary = channel.unary_unary(UNARY)
            await fail_aio(unary, 3)
            clock.advance(30)
            await fail_aio(unary, 2)
            (refused,) = await fail_aio(unary, 1)
            assert trailing(refused)[BREAKER_STATE_KEY] == "open"

    asyncio.run(main())
    assert registry.get(SERVICE).state is State.OPEN
    assert behavior.calls == 5


def test_aio_streams_are_judged_by_their_final_status(behavior: Behavior, clock: FakeClock) -> None:
    registry = breakers(clock)
    behavior.fail_with = grpc.StatusCode.UNAVAILABLE

    async def main() -> None:
        async with aio_served(behavior, aio_interceptors(registry)) as channel:
            for _ in range(3):
                call = channel.unary_stream(SERVER_STREAM)(b"x", timeout=5)
                with pytest.raises(grpc.aio.AioRpcError):
                    async for _response in call:
                        pass
            await aio_eventually(lambda: registry.get(SERVICE).state is State.OPEN, "the breaker opens")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _response in channel.unary_stream(SERVER_STREAM)(b"x"):
                    pass
            assert trailing(refused.value)[BREAKER_STATE_KEY] == "open"

    asyncio.run(main())
    assert behavior.calls == 3
