"""Calls refused locally carry their typed cause (`.cause`), which no server can forge with metadata."""

from __future__ import annotations

import asyncio
import threading

import grpc
import grpc.aio
import pytest

from controlplane.interceptors import (
    BreakerOpen,
    BreakerPolicy,
    BreakerRegistry,
    BulkheadFull,
    BulkheadPolicy,
    BulkheadRegistry,
    ClientPolicy,
    State,
    aio_client_interceptors,
    client_interceptors,
)

from .servers import UNARY, Behavior, dead_address, sync_channel, sync_served

POLICY = ClientPolicy(breaker=BreakerPolicy(minimum_calls=1, window_size=1, wait_in_open=60.0))


def test_a_call_refused_by_an_open_breaker_carries_the_breaker_refusal() -> None:
    breakers = BreakerRegistry(POLICY.breaker)
    with sync_channel(dead_address(), client_interceptors(POLICY, tracing=True, breakers=breakers)) as channel:
        call = channel.unary_unary(UNARY)
        with pytest.raises(grpc.RpcError) as server_side:
            call(b"", timeout=2)
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=2)
    assert getattr(server_side.value, "cause", None) is None  # a real failure has no local cause
    cause = refused.value.cause  # type: ignore[attr-defined]
    assert isinstance(cause, BreakerOpen) and cause.state is State.OPEN and cause.retry_in > 50


def test_aio_a_call_refused_by_an_open_breaker_carries_the_breaker_refusal() -> None:
    async def main() -> object:
        breakers = BreakerRegistry(POLICY.breaker)
        interceptors = aio_client_interceptors(POLICY, tracing=True, breakers=breakers)
        async with grpc.aio.insecure_channel(dead_address(), interceptors=interceptors) as channel:
            call = channel.unary_unary(UNARY)
            for _ in range(2):
                try:
                    await call(b"", timeout=2)
                except grpc.aio.AioRpcError as error:
                    last = error
        return getattr(last, "cause", None)

    assert isinstance(asyncio.run(main()), BreakerOpen)


def test_a_call_refused_by_a_full_bulkhead_carries_the_bulkhead(behavior: Behavior) -> None:
    policy = ClientPolicy(bulkhead=BulkheadPolicy(max_concurrent=1))
    behavior.gate = threading.Event()
    interceptors = client_interceptors(policy, tracing=False, bulkheads=BulkheadRegistry(policy.bulkhead))
    with sync_served(behavior, interceptors) as channel:
        holding = channel.unary_unary(UNARY).future(b"1")
        behavior.wait_in_flight(1)
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(UNARY)(b"2")
        behavior.gate.set()
        assert holding.result() == b"1"
    assert isinstance(refused.value.cause, BulkheadFull)  # type: ignore[attr-defined]
