"""Default deadlines and budget propagation on real loopback calls, across three hops, sync and asyncio.

A (the test) calls B; B's handler calls C. Without propagation C would see B's default deadline (30 s);
with it, C sees what is left of A's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from controlplane.interceptors import (
    DEADLINE_EXCEEDED_KEY,
    ClientPolicy,
    DeadlinePolicy,
    aio_client_interceptors,
    aio_server_interceptors,
    client_interceptors,
    deadline_budget,
    server_interceptors,
)

from .servers import (
    UNARY,
    Behavior,
    aio_served,
    aio_server,
    dead_address,
    sync_channel,
    sync_served,
    sync_server,
    trailing,
)

MARGIN = 0.05
WIRE = 1.01  # gRPC rounds the timeout it sends up by up to 1%: a server may see that much more time


def policy(**deadlines: Any) -> ClientPolicy:
    return ClientPolicy(deadlines=DeadlinePolicy(**{"margin": MARGIN, **deadlines}), breaker=None)


def report(error: grpc.RpcError) -> bytes:
    """What B answers when its call to C failed: the status and the trailing metadata it got."""
    return f"{error.code().name} {dict(error.trailing_metadata() or ())}".encode()


def test_default_deadline_applies_to_calls_that_set_none(behavior: Behavior) -> None:
    with sync_served(behavior, client_interceptors(policy(default_timeout=0.5), tracing=False)) as channel:
        channel.unary_unary(UNARY)(b"x")
        channel.unary_unary(UNARY)(b"x", timeout=3)
    no_timeout, own_timeout = behavior.time_remaining
    assert no_timeout is not None and 0 < no_timeout <= 0.5 * WIRE
    assert own_timeout is not None and 0.5 * WIRE < own_timeout <= 3 * WIRE  # the caller's own timeout wins


def test_default_deadline_can_be_set_per_method(behavior: Behavior) -> None:
    chain = client_interceptors(policy(default_timeout=30, timeouts={"test.Echo/Unary": 0.4}), tracing=False)
    with sync_served(behavior, chain) as channel:
        channel.unary_unary(UNARY)(b"x")
    assert 0 < behavior.time_remaining[0] <= 0.4 * WIRE


def test_slow_server_call_ends_at_the_default_deadline(behavior: Behavior) -> None:
    behavior.gate = threading.Event()
    chain = client_interceptors(policy(default_timeout=0.1), tracing=False)
    with sync_served(behavior, chain) as channel, pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(UNARY)(b"x")
    assert error.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


@contextlib.contextmanager
def three_hops(c_address: str, b_policy: ClientPolicy, workers: int = 8) -> Iterator[tuple[grpc.Channel, Behavior]]:
    """A channel to B, whose handler forwards each request to C (at `c_address`) and answers C's reply."""
    b = Behavior()
    to_c = sync_channel(c_address, client_interceptors(b_policy, tracing=False))

    def forward(request: bytes, context: Any) -> bytes:
        try:
            return to_c.unary_unary(UNARY)(request)
        except grpc.RpcError as error:
            return report(error)

    b.on_call = forward
    b_server = sync_server(b, server_interceptors(tracing=False), workers)
    with to_c, b_server as b_address, sync_channel(b_address) as to_b:
        yield to_b, b


def test_deadline_budget_propagates_across_three_hops(behavior: Behavior) -> None:
    with (
        sync_server(behavior, server_interceptors(tracing=False)) as c_address,
        three_hops(c_address, policy(default_timeout=30)) as (to_b, b),
    ):
        assert to_b.unary_unary(UNARY)(b"hello", timeout=2.0) == b"hello"
    (b_remaining,) = b.time_remaining
    (c_remaining,) = behavior.time_remaining
    assert b_remaining is not None and c_remaining is not None
    assert c_remaining < b_remaining - MARGIN  # C got what B had left, less the margin
    assert c_remaining <= 2.0  # C gives up no later than A, its caller's caller


def test_request_without_deadline_leaves_no_budget_behind_on_a_reused_thread(behavior: Behavior) -> None:
    with sync_server(behavior) as c_address, three_hops(c_address, policy(default_timeout=30), workers=1) as (to_b, _):
        to_b.unary_unary(UNARY)(b"with deadline", timeout=1.0)
        to_b.unary_unary(UNARY)(b"without")
    first, second = behavior.time_remaining
    assert first is not None and first <= 1.0
    assert second is not None and 1.0 * WIRE < second <= 30 * WIRE  # B's default, not the last budget


def test_spent_budget_fails_at_once_without_touching_the_network() -> None:
    # B keeps back 5 s per hop, more than A's whole 2 s deadline; C is a dead address, so a call that
    # went out would fail with UNAVAILABLE, not DEADLINE_EXCEEDED.
    with three_hops(dead_address(), policy(default_timeout=30, margin=5.0)) as (to_b, _):
        answer = to_b.unary_unary(UNARY)(b"x", timeout=2.0)
    assert answer == f"DEADLINE_EXCEEDED {{'{DEADLINE_EXCEEDED_KEY}': 'spent'}}".encode()


def test_call_after_the_budget_is_spent_fails_with_deadline_exceeded_on_a_sync_channel() -> None:
    with (
        sync_channel(dead_address(), client_interceptors(policy(), tracing=False)) as channel,
        deadline_budget(0.01),
        pytest.raises(grpc.RpcError) as error,
    ):
        channel.unary_unary(UNARY)(b"x")
    assert error.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert trailing(error.value) == {DEADLINE_EXCEEDED_KEY: "spent"}


# --- asyncio -----------------------------------------------------------------------------------------


def test_aio_deadline_budget_propagates_across_three_hops(behavior: Behavior) -> None:
    b = Behavior()
    to_c_interceptors = aio_client_interceptors(policy(default_timeout=30), tracing=False)

    async def main() -> bytes:
        async with (
            aio_server(behavior, aio_server_interceptors(tracing=False)) as c_address,
            grpc.aio.insecure_channel(c_address, interceptors=to_c_interceptors) as to_c,
        ):
            b.on_call = lambda request, context: to_c.unary_unary(UNARY)(request)
            async with aio_served(b, server=aio_server_interceptors(tracing=False)) as to_b:
                return await to_b.unary_unary(UNARY)(b"hello", timeout=2.0)

    assert asyncio.run(main()) == b"hello"
    (b_remaining,) = b.time_remaining
    (c_remaining,) = behavior.time_remaining
    assert b_remaining is not None and c_remaining is not None
    assert c_remaining < b_remaining - MARGIN
    assert c_remaining <= 2.0


def test_aio_spent_budget_fails_at_once_without_touching_the_network() -> None:
    b = Behavior()
    to_c_interceptors = aio_client_interceptors(policy(margin=5.0), tracing=False)

    async def main() -> bytes:
        async with grpc.aio.insecure_channel(dead_address(), interceptors=to_c_interceptors) as to_c:

            async def forward(request: bytes, context: Any) -> bytes:
                try:
                    return await to_c.unary_unary(UNARY)(request)
                except grpc.aio.AioRpcError as error:
                    return report(error)

            b.on_call = forward
            async with aio_served(b, server=aio_server_interceptors(tracing=False)) as to_b:
                return await to_b.unary_unary(UNARY)(b"x", timeout=2.0)

    assert asyncio.run(main()) == f"DEADLINE_EXCEEDED {{'{DEADLINE_EXCEEDED_KEY}': 'spent'}}".encode()


def test_aio_default_deadline_ends_a_call_to_a_slow_server(behavior: Behavior) -> None:
    behavior.gate = threading.Event()
    chain = aio_client_interceptors(policy(default_timeout=0.1), tracing=False)

    async def main() -> grpc.aio.AioRpcError:
        async with aio_served(behavior, chain) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await channel.unary_unary(UNARY)(b"x")
            return error.value

    assert asyncio.run(main()).code() is grpc.StatusCode.DEADLINE_EXCEEDED
