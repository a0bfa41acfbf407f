"""WatchSet: one blocking-query loop per key, shared, dropped when idle, all ended by stop()."""

from __future__ import annotations

import asyncio
import contextlib

from controlplane.watch import Backoff, WatchSet


class FakeConsul:
    """Answers blocking queries from memory: a query past the current index waits for a change."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.index = 1
        self.changed = asyncio.Event()
        self.queries: list[str] = []

    async def load(self, key: str, index: int, wait: float) -> tuple[int, str]:
        self.queries.append(key)
        if index >= self.index:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait)
        return self.index, self.values.get(key, "")

    def put(self, key: str, value: str) -> None:
        self.values[key] = value
        self.index += 1
        self.changed.set()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_callers_of_one_key_share_one_watch_and_see_changes():
    async def scenario() -> None:
        consul = FakeConsul()
        watches = WatchSet("values", consul.load, wait=5, backoff=Backoff(), idle_timeout=60)
        first, second = watches.watch("a"), watches.watch("a")
        assert first is second and watches.watch("b") is not first
        stream = first.subscribe()
        assert (await anext(stream)).value == ""
        consul.put("a", "x")
        assert (await anext(stream)).value == "x"
        await stream.aclose()
        await watches.stop()

    run(scenario())


def test_an_idle_watch_is_dropped_and_a_subscribed_one_kept():
    async def scenario() -> None:
        consul = FakeConsul()
        watches = WatchSet("values", consul.load, wait=5, backoff=Backoff(), idle_timeout=0)
        busy = watches.watch("busy")
        stream = busy.subscribe()
        await anext(stream)
        idle = watches.watch("idle")
        await idle.first_sync(5)
        assert watches.watch("idle") is not idle  # dropped as idle, so a new one was started
        assert watches.watch("busy") is busy  # has a subscriber
        await stream.aclose()
        await watches.stop()

    run(scenario())


def test_stop_ends_every_subscription():
    async def scenario() -> None:
        consul = FakeConsul()
        watches = WatchSet("values", consul.load, wait=5, backoff=Backoff(), idle_timeout=60)
        received = []

        async def follow() -> None:
            async for snapshot in watches.watch("a").subscribe():
                received.append(snapshot.value)

        follower = asyncio.create_task(follow())
        while not received:
            await asyncio.sleep(0.01)
        await watches.stop()
        await asyncio.wait_for(follower, 5)
        assert received == [""]

    run(scenario())


def test_a_full_set_drops_its_least_recently_used_idle_watch_and_refuses_when_all_are_followed():
    from controlplane.errors import LimitExceeded

    async def scenario() -> tuple[list[str], str]:
        consul = FakeConsul()
        watches = WatchSet("things", consul.load, wait=5, backoff=Backoff(), idle_timeout=300, max_watches=2)
        first, second = watches.watch("a"), watches.watch("b")
        await first.first_sync(1)
        await second.first_sync(1)
        watches.watch("c")  # "a" was used least recently and nobody follows it
        kept = sorted(key for key in "abc" if watches.has(key))
        followers = [watches.watch(key).subscribe() for key in kept]
        for follower in followers:
            await follower.__anext__()
        try:
            watches.watch("d")
            refused = ""
        except LimitExceeded as exc:
            refused = exc.message
        for follower in followers:
            await follower.aclose()
        await watches.stop()
        return kept, refused

    kept, refused = run(scenario())
    assert kept == ["b", "c"]
    assert "2 things watches are open" in refused


def test_clients_streams_follow_at_most_their_share_and_the_rest_stays_for_other_uses():
    # Watch streams on 256 made-up names took every watch of the registry cache: xDS and new Watch
    # streams of real services were RESOURCE_EXHAUSTED.
    from controlplane.errors import LimitExceeded

    async def scenario() -> tuple[str, list[str]]:
        watches = WatchSet("things", FakeConsul().load, wait=5, backoff=Backoff(), idle_timeout=300, max_watches=4)
        with contextlib.ExitStack() as streams:
            for key in "abc":  # 3 of 4: the share clients' streams may hold
                streams.enter_context(watches.for_stream(key))
            with watches.for_stream("a"):  # another stream of a followed key costs no watch
                pass
            try:
                with watches.for_stream("d"):
                    refused = ""
            except LimitExceeded as exc:
                refused = exc.message
            watches.watch("d")  # Discover, xDS, the saga invoker: still served
        with watches.for_stream("e"):  # the streams ended: room again
            held = sorted(key for key in "abcde" if watches.has(key))
        await watches.stop()
        return refused, held

    refused, held = run(scenario())
    assert refused == ("clients' streams and xDS subscriptions follow 3 things watches, the most they may (3); "
                       "the rest are kept for Discover and the saga invoker")
    assert "d" in held and "e" in held
