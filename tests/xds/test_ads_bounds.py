"""What an ADS client sends is bounded before the server keeps it: read-ahead, texts, environment names.

In-process: the ADS server and its service views run on this test's event loop, fed by real watches whose
fetch answers from memory (no Consul: these are the server's own limits, not its storage).
"""

from __future__ import annotations

import asyncio
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


def never_used(service: str) -> BlockingQueryWatch[Any]:
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
        views = ServiceViews(lambda service: answered((instance,)),
                             lambda service: answered(ServiceState("svc", layers)), first_sync_timeout=5)
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
