"""Retries happen inside gRPC, driven by the service config that `channel_options` builds."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from controlplane.interceptors import (
    BreakerRegistry,
    ClientPolicy,
    RetryPolicy,
    aio_client_interceptors,
    channel_options,
    client_interceptors,
)

from .servers import SERVICE, UNARY, Behavior, aio_server, sync_channel, sync_server

FAST = {"initial_backoff": 0.01, "max_backoff": 0.02}
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def test_idempotent_method_is_retried_until_it_succeeds(behavior: Behavior) -> None:
    behavior.fail_first = [UNAVAILABLE, UNAVAILABLE]
    options = channel_options(RetryPolicy(idempotent_methods=("test.Echo/Unary",), max_attempts=3, **FAST))
    with sync_server(behavior) as address, sync_channel(address, options=options) as channel:
        assert channel.unary_unary(UNARY)(b"x", timeout=10) == b"x"
    assert behavior.calls == 3


def test_method_not_marked_idempotent_is_not_retried(behavior: Behavior) -> None:
    behavior.fail_first = [UNAVAILABLE]
    options = channel_options(RetryPolicy(idempotent_methods=("test.Echo/ServerStream",), **FAST))
    with (
        sync_server(behavior) as address,
        sync_channel(address, options=options) as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        channel.unary_unary(UNARY)(b"x", timeout=10)
    assert error.value.code() is UNAVAILABLE
    assert behavior.calls == 1


def test_retries_stop_after_max_attempts_and_on_codes_not_listed(behavior: Behavior) -> None:
    behavior.fail_first = [UNAVAILABLE] * 3
    options = channel_options(RetryPolicy(idempotent_methods=("test.Echo",), max_attempts=2, **FAST))
    with sync_server(behavior) as address, sync_channel(address, options=options) as channel:
        unary = channel.unary_unary(UNARY)
        with pytest.raises(grpc.RpcError):
            unary(b"x", timeout=10)  # two attempts, both UNAVAILABLE
        assert behavior.calls == 2
        unary(b"x", timeout=10)  # UNAVAILABLE, then OK
        assert behavior.calls == 4
        behavior.fail_with = grpc.StatusCode.INTERNAL
        with pytest.raises(grpc.RpcError) as error:
            unary(b"x", timeout=10)  # INTERNAL is not retryable
    assert error.value.code() is grpc.StatusCode.INTERNAL
    assert behavior.calls == 5


def test_breaker_sees_one_outcome_per_retried_call(behavior: Behavior) -> None:
    behavior.fail_first = [UNAVAILABLE, UNAVAILABLE]
    registry = BreakerRegistry()
    policy = ClientPolicy(retry=RetryPolicy(idempotent_methods=("test.Echo",), **FAST))
    chain = client_interceptors(policy, tracing=False, breakers=registry)
    with sync_server(behavior) as address, sync_channel(address, chain, channel_options(policy)) as channel:
        assert channel.unary_unary(UNARY)(b"x", timeout=10) == b"x"
    snap = registry.snapshot()[SERVICE]
    assert (snap.calls, snap.failures) == (1, 0)
    assert behavior.calls == 3


def test_aio_idempotent_method_is_retried_until_it_succeeds(behavior: Behavior) -> None:
    behavior.fail_first = [UNAVAILABLE, UNAVAILABLE]
    policy = ClientPolicy(retry=RetryPolicy(idempotent_methods=("test.Echo/Unary",), **FAST))

    async def main() -> bytes:
        async with (
            aio_server(behavior) as address,
            grpc.aio.insecure_channel(
                address,
                options=channel_options(policy),
                interceptors=aio_client_interceptors(policy, tracing=False),
            ) as channel,
        ):
            return await channel.unary_unary(UNARY)(b"x", timeout=10)

    assert asyncio.run(main()) == b"x"
    assert behavior.calls == 3
