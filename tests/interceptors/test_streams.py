"""Long-lived response streams under the default client stack get stream rules, not unary ones: no
default deadline, never judged slow by the breaker however long they last (sync and asyncio)."""

from __future__ import annotations

import asyncio
import threading

from controlplane.interceptors import (
    BreakerPolicy,
    BreakerRegistry,
    ClientPolicy,
    State,
    aio_client_interceptors,
    client_interceptors,
)

from .servers import SERVER_STREAM, SERVICE, UNARY, Behavior, FakeClock, aio_served, sync_served

# Any call lasting 1 s is slow, and one slow call opens the breaker: a stream judged like a unary would.
POLICY = ClientPolicy(breaker=BreakerPolicy(slow_call_duration=1.0, slow_call_rate_threshold=1.0, minimum_calls=1,
                                            window_size=1))


def test_a_long_stream_gets_no_default_deadline_and_is_not_judged_slow(behavior: Behavior, clock: FakeClock) -> None:
    breakers = BreakerRegistry(POLICY.breaker, clock=clock)
    behavior.gate = threading.Event()
    with sync_served(behavior, client_interceptors(POLICY, tracing=False, breakers=breakers)) as channel:
        stream = channel.unary_stream(SERVER_STREAM)(b"s")
        behavior.wait_in_flight(1)
        clock.advance(3600)  # an hour-long watch
        behavior.gate.set()
        assert list(stream) == [b"s", b"s"]
        channel.unary_unary(UNARY)(b"u")

    stream_deadline, unary_deadline = behavior.time_remaining
    assert stream_deadline is None or stream_deadline > 1e9  # no 30 s default (sync gRPC reports "none" so)
    assert unary_deadline is not None and 25 < unary_deadline < 31  # the unary default still applies
    assert breakers.get(SERVICE).state is State.CLOSED


def test_aio_a_long_stream_gets_no_default_deadline_and_is_not_judged_slow(behavior: Behavior,
                                                                        clock: FakeClock) -> None:
    breakers = BreakerRegistry(POLICY.breaker, clock=clock)
    behavior.gate = threading.Event()

    async def main() -> list[bytes]:
        async with aio_served(behavior, aio_client_interceptors(POLICY, tracing=False, breakers=breakers)) as channel:
            stream = channel.unary_stream(SERVER_STREAM)(b"s")
            await asyncio.to_thread(behavior.wait_in_flight, 1)
            clock.advance(3600)
            behavior.gate.set()
            return [message async for message in stream]

    assert asyncio.run(main()) == [b"s", b"s"]
    assert behavior.time_remaining == [None]
    assert breakers.get(SERVICE).state is State.CLOSED
