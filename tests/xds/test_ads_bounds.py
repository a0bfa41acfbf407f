"""What an ADS client sends is bounded before the server keeps it: read-ahead, texts, environment names.

In-process: the ADS server and its service views run on this test's event loop, fed by real watches whose
fetch answers from memory (no Consul: these are the server's own limits, not its storage).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from controlplane.config.model import Layer, ServiceState
from controlplane.registry.model import Health, Instance
from controlplane.watch import BlockingQueryWatch
from controlplane.xds.ads import ENVIRONMENT_KEY, MAX_CLIENT_TEXT, MAX_PENDING, AggregatedDiscovery
from controlplane.xds.resources import CLUSTER, LISTENER
from controlplane.xds.v1 import envoy_wire_pb2 as w
from controlplane.xds.views import ServiceViews


class Aborted(Exception):
    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class Context:
    """What the ADS handler asks of its grpc.aio servicer context."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    async def abort_with_status(self, status: grpc.Status) -> None:
        raise Aborted(status)


def answered(value: Any) -> BlockingQueryWatch[Any]:
    """A watch whose fetch answers `value` at once, then waits as a blocking query on an unchanged key does."""
    forever = asyncio.Event()

    async def fetch(index: int, wait: float) -> tuple[int, Any]:
        if index:
            await forever.wait()
        return 1, value

    return BlockingQueryWatch("test", fetch).start()


def held(watch: BlockingQueryWatch[Any]) -> contextlib.AbstractContextManager[BlockingQueryWatch[Any]]:
    """A watch as ServiceViews takes one: held while the context is entered (no share to count here)."""
    return contextlib.nullcontext(watch)


def never_used(service: str) -> contextlib.AbstractContextManager[BlockingQueryWatch[Any]]:
    raise AssertionError(f"no view should be made for {service}")


def test_a_client_that_does_not_read_its_responses_is_not_read_ahead_of() -> None:
    async def scenario() -> tuple[int, int]:
        ads = AggregatedDiscovery(ServiceViews(never_used, never_used))
        taken = 0

        async def requests() -> AsyncIterator[w.DiscoveryRequest]:
            nonlocal taken
            for n in range(10_000):  # each changes the subscription, so each asks for a response
                taken += 1
                yield w.DiscoveryRequest(type_url=LISTENER, resource_names=[f"Not_A_Service_{n}"])

        responses = ads.stream(requests(), Context())  # type: ignore[arg-type]
        await anext(responses)
        for _ in range(100):  # the reader runs as far as it may while no response is taken
            await asyncio.sleep(0)
        held = taken
        answers = 1 + sum([1 async for _ in responses])  # reading again: everything is taken and the stream ends
        return held, answers

    held, answers = asyncio.run(scenario())
    assert held <= 2 * MAX_PENDING + 1, f"{held} requests read while the client read no response"
    assert answers >= 10_000 / (MAX_PENDING + 1)


def test_node_texts_and_nack_texts_are_kept_cut_to_size() -> None:
    async def open_stream() -> tuple[str, str, str, str, int]:
        ads = AggregatedDiscovery(ServiceViews(never_used, never_used))
        requests: asyncio.Queue[w.DiscoveryRequest | None] = asyncio.Queue()

        async def feed() -> AsyncIterator[w.DiscoveryRequest]:
            while (request := await requests.get()) is not None:
                yield request

        node = w.Node(id="n" * 100_000, cluster="c" * 100_000, user_agent_name="u" * 100_000)
        responses = ads.stream(feed(), Context())  # type: ignore[arg-type]
        requests.put_nowait(w.DiscoveryRequest(type_url=CLUSTER, resource_names=["Not_A_Service"], node=node))
        first = await anext(responses)
        requests.put_nowait(w.DiscoveryRequest(
            type_url=CLUSTER, resource_names=["Not_A_Service"], response_nonce=first.nonce,
            error_detail=w.RpcStatus(code=3, message="x" * 1_000_000)))
        (stream,) = ads.streams.values()
        pending = asyncio.ensure_future(anext(responses))
        while not stream.subscriptions[CLUSTER].nacks:  # the NACK is taken on the loop's next turns
            await asyncio.sleep(0)
        sub = stream.subscriptions[CLUSTER]
        found = (stream.node_id, stream.node_cluster, stream.user_agent, sub.last_nack, sub.nacks)
        requests.put_nowait(None)
        with pytest.raises(StopAsyncIteration):
            await pending
        return found

    node_id, cluster, user_agent, nack, nacks = asyncio.run(open_stream())
    assert nacks == 1
    for text, letter in ((node_id, "n"), (cluster, "c"), (user_agent, "u"), (nack, "x")):
        assert len(text) == MAX_CLIENT_TEXT and text.startswith(letter * 10) and text.endswith("…")


def test_a_node_with_an_invalid_environment_ends_its_stream_with_invalid_argument() -> None:
    async def scenario(environment: str) -> grpc.Status:
        ads = AggregatedDiscovery(ServiceViews(never_used, never_used))

        async def feed() -> AsyncIterator[w.DiscoveryRequest]:
            metadata = struct_pb2.Struct(fields={ENVIRONMENT_KEY: struct_pb2.Value(string_value=environment)})
            yield w.DiscoveryRequest(type_url=CLUSTER, resource_names=["Not_A_Service"],
                                     node=w.Node(id="bad-env", metadata=metadata))

        with pytest.raises(Aborted) as aborted:
            await anext(ads.stream(feed(), Context()))  # type: ignore[arg-type]
        assert not ads.streams
        return aborted.value.status

    for environment in ("Staging", "default", "x" * 100_000, "a b", "é"):
        status = asyncio.run(scenario(environment))
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT, environment
        assert "node.metadata.environment" in status.details and len(status.details) < 1100


def test_environments_without_a_layer_share_the_default_layers_resources() -> None:
    instance = Instance("svc", "svc-a", "127.0.0.1", 5000, health=Health.PASSING)
    layers = {"": Layer("", {"traffic_policy": {"timeout_seconds": 2}}, 1, "test", 0.0),
              "staging": Layer("staging", {"traffic_policy": {"timeout_seconds": 5}}, 2, "test", 0.0)}

    async def scenario() -> None:
        views = ServiceViews(lambda service: held(answered((instance,))),
                             lambda service: held(answered(ServiceState("svc", layers))), first_sync_timeout=5)
        view = views.use("svc")
        for _ in range(1000):  # the view is ready once both watches have answered
            if view.ready:
                break
            await asyncio.sleep(0.005)
        assert view.ready
        default, staging = view.resources(""), view.resources("staging")
        assert default is not None and staging is not None and default is not staging
        unconfigured = {view.resources(f"qa-{n}") for n in range(500)}
        assert {id(r) for r in unconfigured} == {id(default)}
        assert len(view._built) == 2  # one per configured layer, not one per name clients sent
        views.release("svc")
        await views.stop()

    asyncio.run(scenario())



def first_answer(*requests: w.DiscoveryRequest) -> w.DiscoveryResponse | grpc.Status:
    """The first response of a stream that sends `requests`, or the status it was ended with."""
    async def scenario() -> w.DiscoveryResponse | grpc.Status:
        ads = AggregatedDiscovery(ServiceViews(never_used, never_used))

        async def feed() -> AsyncIterator[w.DiscoveryRequest]:
            for request in requests:
                yield request
            await asyncio.Event().wait()  # a client keeps its stream open

        responses = ads.stream(feed(), Context())  # type: ignore[arg-type]
        try:
            return await anext(responses)
        except Aborted as aborted:
            return aborted.status
        finally:
            await responses.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize("port", ["²", "٣", "9" * 400, "065536", "0", "-1", " 80"])
def test_a_listener_name_with_an_odd_port_is_absent_not_a_failure(port: str) -> None:
    answer = first_answer(w.DiscoveryRequest(type_url=LISTENER, resource_names=[f"svc:{port}"]))
    assert isinstance(answer, w.DiscoveryResponse) and list(answer.resources) == []


def test_a_resource_name_longer_than_any_of_ours_is_invalid_argument() -> None:
    answer = first_answer(w.DiscoveryRequest(type_url=CLUSTER, resource_names=["svc", "s" * (MAX_CLIENT_TEXT + 1)]))
    assert isinstance(answer, grpc.Status) and answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "resource_names[1]" in answer.details


def test_the_status_rpc_pages_streams_by_count_and_by_bytes() -> None:
    from controlplane.paging import MAX_PAGE_BYTES
    from controlplane.v1 import xds_pb2
    from controlplane.xds.ads import MAX_NAMES, Stream, Subscription
    from controlplane.xds.status import XdsStatusServicer

    ads = AggregatedDiscovery(ServiceViews(never_used, never_used))
    for n in range(1, 8):  # each stream as big as a client can make it: 3 types x 256 names of 512 characters
        names = frozenset(f"{n}-{i}-".ljust(MAX_CLIENT_TEXT, "x") for i in range(MAX_NAMES))
        ads.streams[n] = Stream(peer=f"ipv4:127.0.0.1:{n}", node_id=f"node-{n}",
                                subscriptions={t: Subscription(names=names) for t in (LISTENER, CLUSTER)})
    servicer = XdsStatusServicer(ads)

    def pages(size: int) -> list[xds_pb2.ListXdsClientsResponse]:
        found = [asyncio.run(servicer.ListXdsClients(xds_pb2.ListXdsClientsRequest(page_size=size), Context()))]
        while found[-1].next_page_token:
            found.append(asyncio.run(servicer.ListXdsClients(xds_pb2.ListXdsClientsRequest(
                page_size=size, page_token=found[-1].next_page_token), Context())))  # type: ignore[arg-type]
        return found

    by_bytes = pages(0)
    assert len(by_bytes) > 1 and all(page.ByteSize() <= MAX_PAGE_BYTES for page in by_bytes)
    assert [c.node_id for page in by_bytes for c in page.clients] == [f"node-{n}" for n in range(1, 8)]
    assert [len(page.clients) for page in pages(1)] == [1] * 7
    with pytest.raises(Aborted) as refused:
        asyncio.run(servicer.ListXdsClients(xds_pb2.ListXdsClientsRequest(page_token="²"), Context()))
    assert refused.value.status.code == grpc.StatusCode.INVALID_ARGUMENT


# --- what ADS clients name comes out of the share of the watch sets kept for clients --------------------


class Client:
    """One ADS stream of a test client: requests go in as it sends them, the status it ends with comes out."""

    def __init__(self, ads: AggregatedDiscovery, peer: str = "ipv4:127.0.0.1:40000") -> None:
        self._inbox: asyncio.Queue[w.DiscoveryRequest] = asyncio.Queue()
        context = Context()
        context.peer = lambda: peer  # type: ignore[method-assign]
        self._responses = ads.stream(self._feed(), context)  # type: ignore[arg-type]
        self.status: grpc.Status | None = None

    async def _feed(self) -> AsyncIterator[w.DiscoveryRequest]:
        while True:
            yield await self._inbox.get()

    async def ask(self, type_url: str, names: list[str]) -> w.DiscoveryResponse | grpc.Status:
        """Subscribe to `names` of `type_url`: the next response, or the status the stream ended with."""
        self._inbox.put_nowait(w.DiscoveryRequest(type_url=type_url, resource_names=names))
        try:
            return await asyncio.wait_for(anext(self._responses), 10)
        except Aborted as aborted:
            self.status = aborted.status
            return aborted.status

    async def close(self) -> None:
        await self._responses.aclose()


def _watch_sets(max_watches: int) -> tuple[Any, Any]:
    from controlplane.watch import Backoff
    from controlplane.watch.watch_set import WatchSet

    async def instances(key: str, index: int, wait: float) -> tuple[int, Any]:
        if index:
            await asyncio.Event().wait()  # unchanged, as a blocking query on an unchanged key
        return 1, (Instance(key, f"{key}-a", "127.0.0.1", 5000, health=Health.PASSING),)

    async def documents(key: str, index: int, wait: float) -> tuple[int, Any]:
        if index:
            await asyncio.Event().wait()
        return 1, ServiceState(key)

    make = {"wait": 5, "backoff": Backoff(), "idle_timeout": 300, "max_watches": max_watches}
    return WatchSet("instances", instances, **make), WatchSet("config", documents, **make)


def test_ads_subscriptions_on_made_up_names_cannot_take_the_watches_discover_needs() -> None:
    # An ADS stream's views took watches for any name it sent, outside the share kept for clients: made-up
    # names filled the watch sets, and Discover, Watch and the saga invoker were RESOURCE_EXHAUSTED.
    async def scenario() -> tuple[Any, ...]:
        instances, documents = _watch_sets(max_watches=4)  # clients may hold 3 of 4
        ads = AggregatedDiscovery(ServiceViews(instances.for_stream, documents.for_stream, first_sync_timeout=5))
        greedy = Client(ads)
        taken = await greedy.ask(CLUSTER, ["made-up-1", "made-up-2", "made-up-3"])
        refused = await greedy.ask(CLUSTER, ["made-up-1", "made-up-2", "made-up-3", "made-up-4"])
        discover = instances.watch("order")  # what Discover does for a service nobody streams: room is left
        await greedy.close()
        modest = Client(ads, peer="ipv4:127.0.0.1:40001")
        after = await modest.ask(CLUSTER, ["payment", "inventory", "user"])  # the greedy stream's watches are back
        await modest.close()
        await ads._views.stop()
        await instances.stop()
        await documents.stop()
        return taken, refused, discover, after

    taken, refused, discover, after = asyncio.run(scenario())
    assert isinstance(taken, w.DiscoveryResponse) and len(taken.resources) == 3
    assert isinstance(refused, grpc.Status) and refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the most they may (3)" in refused.details
    assert discover is not None
    assert isinstance(after, w.DiscoveryResponse) and len(after.resources) == 3


def test_a_stream_follows_at_most_max_names_services_across_its_types() -> None:
    from controlplane.xds.ads import MAX_NAMES

    async def scenario() -> tuple[Any, Any]:
        instances, documents = _watch_sets(max_watches=4 * MAX_NAMES)
        ads = AggregatedDiscovery(ServiceViews(instances.for_stream, documents.for_stream, first_sync_timeout=5))
        client = Client(ads)
        half = MAX_NAMES // 2 + 1
        first = await client.ask(CLUSTER, [f"a-{n}" for n in range(half)])
        views = len(ads._views)
        second = await client.ask(LISTENER, [f"b-{n}" for n in range(half)])  # each type within MAX_NAMES
        views = (views, len(ads._views))
        await client.close()
        await ads._views.stop()
        await instances.stop()
        await documents.stop()
        return first, second, views

    first, second, views = asyncio.run(scenario())
    assert isinstance(first, w.DiscoveryResponse)
    assert isinstance(second, grpc.Status) and second.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {MAX_NAMES}" in second.details
    # one view per service; the refused subscription made none, and the ended stream left none behind
    assert views == (MAX_NAMES // 2 + 1, 0)


def test_one_connection_holds_at_most_its_quota_of_ads_streams() -> None:
    async def scenario() -> tuple[Any, ...]:
        instances, documents = _watch_sets(max_watches=16)
        ads = AggregatedDiscovery(ServiceViews(instances.for_stream, documents.for_stream, first_sync_timeout=5),
                                  streams_per_connection=2)
        mine = [Client(ads), Client(ads), Client(ads)]
        answers = [await client.ask(CLUSTER, ["order"]) for client in mine]
        other = Client(ads, peer="ipv4:127.0.0.1:40001")
        theirs = await other.ask(CLUSTER, ["order"])
        await mine[0].close()
        again = Client(ads)
        reopened = await again.ask(CLUSTER, ["order"])
        for client in (*mine[1:], other, again):
            await client.close()
        await ads._views.stop()
        await instances.stop()
        await documents.stop()
        return (*answers, theirs, reopened)

    first, second, third, theirs, reopened = asyncio.run(scenario())
    assert isinstance(first, w.DiscoveryResponse) and isinstance(second, w.DiscoveryResponse)
    assert isinstance(third, grpc.Status) and third.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 2 ADS streams" in third.details
    assert isinstance(theirs, w.DiscoveryResponse) and isinstance(reopened, w.DiscoveryResponse)
