"""The event store against a real Consul: CAS appends, group commit, bounded loads, pushed subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import consul.aio
import pytest

from controlplane.consul.access import split_address
from controlplane.consul.local_agent import LocalConsul
from controlplane.errors import ConflictError
from controlplane.saga.eventstore import Event, EventStore, GroupCommitter
from controlplane.saga.eventstore.txn_client import TxnClient
from controlplane.saga.projections import SagasByStatus
from controlplane.saga.repository import SagaRepository, fold_slice
from controlplane.saga.state import EventType, SagaStatus

T = TypeVar("T")


@contextlib.asynccontextmanager
async def event_store(agent: LocalConsul, window: float = 0.002, stream_watch_wait: float = 2.0,
                      max_watches: int = 100, connections: int = 100) -> AsyncIterator[EventStore]:
    host, port = split_address(agent.http_addr)
    client = consul.aio.Consul(host=host, port=port, connections_timeout=5, connections_limit=connections)
    blocking = consul.aio.Consul(host=host, port=port, connections_timeout=20, connections_limit=max_watches + 2)
    txn_client = TxnClient(host, port)
    committer = GroupCommitter(txn_client.run, window=window).start()
    store = EventStore(client, blocking, committer, f"test-es-{uuid.uuid4().hex[:8]}/", watch_wait=5,
                       stream_watch_wait=stream_watch_wait, max_watches=max_watches)
    try:
        yield store
    finally:
        await store.stop()
        await committer.stop()
        await txn_client.close()
        await client.close()
        await blocking.close()


def run(agent: LocalConsul, scenario: Callable[[EventStore], Awaitable[T]], window: float = 0.002) -> T:
    async def main() -> T:
        async with event_store(agent, window) as store:
            return await scenario(store)

    return asyncio.run(main())


def ev(kind: str, **data: Any) -> Event:
    return Event(kind, 1.0, data)


def committer_of(store: EventStore) -> GroupCommitter:
    return store._committer


def test_appended_events_read_back_in_order_with_growing_positions(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> list[Any]:
        await store.append("s1", 0, [ev("a", n=1), ev("b", n=2)])
        await store.append("s1", 2, [ev("c", n=3)])
        return await store.read("s1")

    events = run(consul, scenario)

    assert [(e.version, e.event.type, e.event.data["n"]) for e in events] == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]
    assert events[0].position == events[1].position < events[2].position


def test_append_at_a_stale_version_conflicts_and_writes_nothing(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> tuple[str, list[Any]]:
        await store.append("s1", 0, [ev("a"), ev("b")])
        with pytest.raises(ConflictError) as stale:
            await store.append("s1", 1, [ev("late")])
        with pytest.raises(ConflictError):
            await store.append("s1", 0, [ev("again")])  # creating an existing stream
        return stale.value.message, await store.read("s1")

    message, events = run(consul, scenario)

    assert "at version 2, not 1" in message
    assert [e.event.type for e in events] == ["a", "b"]


def test_two_writers_extending_the_same_version_cannot_both_win(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> tuple[list[Any], list[Any]]:
        await store.append("s1", 0, [ev("start")])
        other = EventStore(store._consul, store._blocking, store._committer, store.prefix)  # its own head cache
        await other.head("s1")
        results = await asyncio.gather(store.append("s1", 1, [ev("mine")]), other.append("s1", 1, [ev("theirs")]),
                                       return_exceptions=True)
        return results, await store.read("s1")

    results, events = run(consul, scenario)

    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "StreamHead"]
    assert len(events) == 2


def test_concurrent_appends_share_consul_transactions(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> tuple[int, list[Any]]:
        await asyncio.gather(*(store.append(f"s{i}", 0, [ev("a")]) for i in range(60)))
        heads = await store.heads()
        return committer_of(store).stats.transactions, sorted(h.version for h in heads.values())

    transactions, versions = run(consul, scenario, window=0.02)

    assert versions == [1] * 60
    assert transactions <= 6  # 60 appends of 2 operations, at most 60 operations per transaction


def test_a_conflicting_append_fails_alone_and_the_rest_of_its_batch_commits(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> tuple[list[Any], int, int]:
        await store.append("taken", 0, [ev("a")])
        appends = [store.append(f"s{i}", 0, [ev("a")]) for i in range(10)]
        appends.insert(5, store.append("taken", 0, [ev("b")]))
        results = await asyncio.gather(*appends, return_exceptions=True)
        return results, committer_of(store).stats.conflicts, len(await store.heads())

    results, conflicts, streams = run(consul, scenario, window=0.05)

    assert [type(r).__name__ for r in results].count("ConflictError") == 1
    assert isinstance(results[5], ConflictError)
    assert (conflicts, streams) == (1, 11)


def test_load_reads_the_latest_snapshot_and_only_the_events_after_it(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> Any:
        for version in range(40):
            snapshot = {"count": version + 1} if (version + 1) % 16 == 0 else None
            await store.append("long", version, [ev("tick")], snapshot=snapshot)
        return await store.load("long")

    loaded = run(consul, scenario)

    assert (loaded.head.version, loaded.head.snapshot_version, loaded.snapshot) == (40, 32, {"count": 32})
    assert [e.version for e in loaded.events] == list(range(33, 41))


def test_a_snapshot_too_large_for_a_transaction_is_left_out_and_the_append_still_lands(consul: LocalConsul) -> None:
    # A saga whose state grew past what one Consul transaction carries (many attempts with long errors)
    # failed every append that carried a snapshot, forever: the saga never settled.
    async def scenario(store: EventStore) -> Any:
        await store.append("big", 0, [ev("start")], snapshot={"count": 1})
        await store.append("big", 1, [ev("tick")], snapshot={"errors": ["e" * 1000] * 600})  # ~600 KB
        await store.append("big", 2, [ev("tick")])
        return await store.load("big")

    loaded = run(consul, scenario)

    assert (loaded.head.version, loaded.head.snapshot_version, loaded.snapshot) == (3, 1, {"count": 1})
    assert [e.version for e in loaded.events] == [2, 3]


def test_stream_subscription_replays_then_pushes_new_events(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> list[int]:
        await store.append("s1", 0, [ev("a"), ev("b")])
        seen: list[int] = []

        async def follow() -> None:
            async for recorded in store.subscribe("s1", from_version=1):
                seen.append(recorded.version)
                if recorded.version == 4:
                    return

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)
        await store.append("s1", 2, [ev("c")])
        await store.append("s1", 3, [ev("d")])
        await asyncio.wait_for(follower, 5)
        return seen

    assert run(consul, scenario) == [2, 3, 4]


def test_subscription_to_a_stream_written_by_another_process_is_pushed_by_consul(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> list[int]:
        elsewhere = EventStore(store._consul, store._blocking, store._committer, store.prefix)  # another replica
        await elsewhere.append("s1", 0, [ev("a")])
        seen: list[int] = []

        async def follow() -> None:
            async for recorded in store.subscribe("s1"):
                seen.append(recorded.version)
                if recorded.version == 3:
                    return

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)
        await elsewhere.append("s1", 1, [ev("b"), ev("c")])
        await asyncio.wait_for(follower, 5)
        await elsewhere.stop()
        return seen

    assert run(consul, scenario) == [1, 2, 3]


def test_subscription_by_event_type_starts_after_a_position(consul: LocalConsul) -> None:
    async def scenario(store: EventStore) -> list[tuple[str, str]]:
        await store.append("s1", 0, [ev("started"), ev("done")])
        position = (await store.read("s1"))[-1].position
        seen: list[tuple[str, str]] = []

        async def follow() -> None:
            async for recorded in store.subscribe_all(position, types={"done"}):
                seen.append((recorded.stream, recorded.event.type))
                if len(seen) == 2:
                    return

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)
        await store.append("s2", 0, [ev("started"), ev("done")])
        await store.append("s3", 0, [ev("started")])
        await store.append("s3", 1, [ev("done")])
        await asyncio.wait_for(follower, 5)
        return seen

    assert run(consul, scenario) == [("s2", "done"), ("s3", "done")]


def test_sagas_by_status_view_is_rebuilt_from_the_streams(consul: LocalConsul) -> None:
    started = {"definition_name": "order", "definition_version": 1, "input": {}, "steps": ["one"]}

    async def scenario(store: EventStore) -> tuple[list[str], list[str], int]:
        view = SagasByStatus(store._consul, store.prefix)
        repository = SagaRepository(store, view)
        for i in range(3):
            state = await repository.append(f"saga-{i}", None, [Event(EventType.SAGA_STARTED, 1.0, started)])
            if i:
                await repository.append(f"saga-{i}", state, [Event(EventType.SAGA_COMPLETED, 2.0)])
        before = [s["saga_id"] for s in (await view.list(SagaStatus.COMPLETED, "", 10, ""))[0]]
        await store._consul.kv.delete(view.base, recurse=True)
        listed = await view.rebuild(store, fold_slice)
        after = [s["saga_id"] for s in (await view.list(SagaStatus.COMPLETED, "", 10, ""))[0]]
        return before, after, listed

    before, after, listed = run(consul, scenario)

    assert before == after == ["saga-1", "saga-2"]
    assert listed == 3


def test_a_rebuild_removes_entries_of_sagas_that_are_gone_but_not_of_sagas_started_while_it_ran(
    consul: LocalConsul,
) -> None:
    started = {"definition_name": "order", "definition_version": 1, "input": {}, "steps": ["one"]}

    async def scenario(store: EventStore) -> list[str]:
        view = SagasByStatus(store._consul, store.prefix)
        repository = SagaRepository(store, view)
        await repository.append("gone", None, [Event(EventType.SAGA_STARTED, 1.0, started)])
        await store._consul.kv.delete(store.head_key("gone"))  # its entry is now an orphan
        listed_heads = store.heads

        async def heads_then_a_new_saga() -> dict:
            heads = await listed_heads()  # listed before "new" starts, its entry listed after
            await repository.append("new", None, [Event(EventType.SAGA_STARTED, 1.0, started)])
            return heads

        store.heads = heads_then_a_new_saga  # type: ignore[method-assign]
        await view.rebuild(store, fold_slice)
        return [s["saga_id"] for s in (await view.list(SagaStatus.RUNNING, "", 10, ""))[0]]

    assert run(consul, scenario) == ["new"]


def test_ended_stream_subscriptions_do_not_use_up_the_agents_connections(tmp_path: Path) -> None:
    """Consul 1.8 keeps a blocking query's connection until its wait runs out, even after the client gave up,
    and refuses connections from one address past limits.http_max_conns_per_client: sagas that end one after
    another on a replica that follows them in Consul must not leave that budget spent (with a 30 s wait, the
    subscriptions after the 30th are refused here and the last one never sees its event)."""
    agent = LocalConsul(data_dir=tmp_path, dev=True, extra_config={"limits": {"http_max_conns_per_client": 30}})
    agent.start()

    async def scenario(store: EventStore) -> list[int]:
        elsewhere = EventStore(store._consul, store._blocking, store._committer, store.prefix)  # the driver
        try:
            for n in range(40):
                await elsewhere.append(f"s{n}", 0, [ev("a")])
                async with contextlib.aclosing(store.subscribe(f"s{n}")) as events:
                    await asyncio.wait_for(anext(events), 5)
            await elsewhere.append("last", 0, [ev("a"), ev("b")])
            async with contextlib.aclosing(store.subscribe("last")) as events:
                return [(await asyncio.wait_for(anext(events), 5)).version for _ in range(2)]
        finally:
            await elsewhere.stop()

    async def main() -> list[int]:
        async with event_store(agent, stream_watch_wait=0.1) as store:
            return await scenario(store)

    try:
        assert asyncio.run(main()) == [1, 2]
    finally:
        agent.destroy()


def test_watches_beyond_the_connection_budget_wait_their_turn_and_writes_go_on(tmp_path: Path) -> None:
    """Twenty sagas followed in Consul at once with six slots for their blocking queries (eight connections
    for those, two for short requests, at most four transactions in flight) and an agent that takes sixteen
    from one address: every subscriber still sees its saga's next event in its turn, and every append
    commits. With one connection per watch the agent would refuse past sixteen, the event store's reads and
    writes with them; with a pool limit alone, the first watches would keep the connections for good."""
    agent = LocalConsul(data_dir=tmp_path, dev=True, extra_config={"limits": {"http_max_conns_per_client": 16}})
    agent.start()

    async def scenario(store: EventStore) -> list[int]:
        elsewhere = EventStore(store._consul, store._blocking, store._committer, store.prefix)  # the driver
        streams = [f"s{n}" for n in range(20)]
        try:
            for stream in streams:
                await elsewhere.append(stream, 0, [ev("a")])
            followers = [contextlib.aclosing(store.subscribe(stream)) for stream in streams]
            async with contextlib.AsyncExitStack() as stack:
                events = [await stack.enter_async_context(f) for f in followers]
                await asyncio.wait_for(asyncio.gather(*(anext(e) for e in events)), 10)  # each one's first
                for stream in streams:
                    await elsewhere.append(stream, 1, [ev("b")])
                seen = await asyncio.wait_for(asyncio.gather(*(anext(e) for e in events)), 15)
                return [recorded.version for recorded in seen]
        finally:
            await elsewhere.stop()

    async def main() -> list[int]:
        async with event_store(agent, stream_watch_wait=0.5, max_watches=6, connections=2) as store:
            return await scenario(store)

    try:
        assert asyncio.run(main()) == [2] * 20
    finally:
        agent.destroy()
