"""The ADS protocol as the server speaks it, driven by hand: ACKs, NACKs, stale nonces, the status RPC."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

import grpc
import pytest

from controlplane.v1 import config_pb2_grpc, xds_pb2, xds_pb2_grpc
from controlplane.xds.ads import METHOD
from controlplane.xds.resources import CLUSTER, LISTENER
from controlplane.xds.v1 import envoy_wire_pb2 as w
from tests.config.conftest import set_config
from tests.helpers import wait_until
from tests.xds.conftest import Backend


class RawStream:
    """One ADS stream whose every request the test writes."""

    def __init__(self, channel: grpc.Channel, node_id: str) -> None:
        self.node_id = node_id
        self._requests: queue.Queue[w.DiscoveryRequest | None] = queue.Queue()
        call = channel.stream_stream(METHOD, request_serializer=w.DiscoveryRequest.SerializeToString,
                                     response_deserializer=w.DiscoveryResponse.FromString)
        self._responses = call(iter(self._requests.get, None), timeout=30)

    def send(self, type_url: str, names: list[str], nonce: str = "", version: str = "", nack: str = "") -> None:
        request = w.DiscoveryRequest(type_url=type_url, resource_names=names, response_nonce=nonce,
                                     version_info=version, node=w.Node(id=self.node_id))
        if nack:
            request.error_detail.CopyFrom(w.RpcStatus(code=3, message=nack))
        self._requests.put(request)

    def receive(self) -> w.DiscoveryResponse:
        return next(self._responses)

    def close(self) -> None:
        self._requests.put(None)
        self._responses.cancel()


@pytest.fixture
def raw(channel: grpc.Channel) -> Iterator[Callable[[str], RawStream]]:
    made: list[RawStream] = []

    def make(node_id: str) -> RawStream:
        made.append(RawStream(channel, node_id))
        return made[-1]

    yield make
    for stream in made:
        stream.close()


def subscription(channel: grpc.Channel, node_id: str, type_url: str) -> xds_pb2.XdsSubscription:
    reply = xds_pb2_grpc.XdsStatusServiceStub(channel).ListXdsClients(xds_pb2.ListXdsClientsRequest(), timeout=5)
    client = next(c for c in reply.clients if c.node_id == node_id)
    return next(s for s in client.subscriptions if s.type_url == type_url)


def test_a_nack_is_recorded_with_the_clients_text_and_the_next_version_clears_it(
    service_name: str, backends: Callable[..., Backend], raw: Callable[[str], RawStream], channel: grpc.Channel
) -> None:
    backends(service_name, f"{service_name}-a")
    stream = raw("nacking-node")
    stream.send(LISTENER, [service_name])
    first = stream.receive()
    assert [w.Listener.FromString(r.value).name for r in first.resources] == [service_name]
    stream.send(LISTENER, [service_name], nonce=first.nonce, nack="route_config: bad thing")
    # The request travels on the stream while the status is asked on another call: wait for it to be taken.
    sub = wait_until(lambda: (found := subscription(channel, "nacking-node", LISTENER)).nacks and found,
                     what="the NACK to be recorded")
    assert (sub.last_nack, sub.nacks, sub.acked_version, sub.sent_version) == (
        "route_config: bad thing", 1, "", first.version_info)
    # The NACK asks for nothing: the next response is the one a policy change makes, and it can be ACKed.
    set_config(config_pb2_grpc.ConfigServiceStub(channel), service_name,
               {"traffic_policy": {"timeout_seconds": 3}})
    second = stream.receive()
    assert second.version_info != first.version_info and second.nonce != first.nonce
    route = w.HttpConnectionManager.FromString(
        w.Listener.FromString(second.resources[0].value).api_listener.api_listener.value).route_config
    assert route.virtual_hosts[0].routes[0].route.max_stream_duration.max_stream_duration.seconds == 3
    stream.send(LISTENER, [service_name], nonce=second.nonce, version=second.version_info)
    stream.send(CLUSTER, [service_name])  # a later request on the same stream is answered after the ACK
    assert stream.receive().type_url == CLUSTER  # answered after the ACK: the ACK has been taken
    sub = subscription(channel, "nacking-node", LISTENER)
    assert (sub.last_nack, sub.nacks, sub.acked_version) == ("", 1, second.version_info)


def test_a_request_with_a_stale_nonce_is_ignored(
    service_name: str, backends: Callable[..., Backend], raw: Callable[[str], RawStream]
) -> None:
    backends(service_name, f"{service_name}-a")
    stream = raw("stale-node")
    stream.send(CLUSTER, [service_name])
    first = stream.receive()
    stream.send(CLUSTER, [service_name, f"{service_name}@0.1.0"], nonce="not-" + first.nonce)  # stale: ignored
    stream.send(CLUSTER, [f"{service_name}@0.1.0"], nonce=first.nonce, version=first.version_info)
    answer = stream.receive()
    assert [w.Cluster.FromString(r.value).name for r in answer.resources] == [f"{service_name}@0.1.0"]


def test_names_the_server_does_not_make_are_absent_not_errors(raw: Callable[[str], RawStream]) -> None:
    stream = raw("odd-names")
    stream.send(LISTENER, ["Not_A_Service", "xdstp://elsewhere/envoy.config.listener.v3.Listener/x", "svc:99999"])
    response = stream.receive()
    assert response.type_url == LISTENER and list(response.resources) == []


def test_streams_acks_and_nacks_are_in_the_metrics(consul: object, tmp_path: object) -> None:
    from pathlib import Path

    from tests.helpers import ControlPlaneProcess, free_port
    from tests.metrics.test_metrics import scrape

    port = free_port()
    plane = ControlPlaneProcess(consul.http_addr, extra_args=["--metrics-listen", f"127.0.0.1:{port}"],  # type: ignore[attr-defined]
                                log_path=Path(str(tmp_path)) / "cp.log").start()
    try:
        with grpc.insecure_channel(plane.address) as channel:
            stream = RawStream(channel, "metered")
            stream.send(CLUSTER, ["metered-svc"])
            first = stream.receive()
            stream.send(CLUSTER, ["metered-svc"], nonce=first.nonce, nack="no thanks")
            stream.send(CLUSTER, ["metered-svc", "metered-svc@1"], nonce=first.nonce, version=first.version_info)
            second = stream.receive()
            stream.send(CLUSTER, ["metered-svc", "metered-svc@1"], nonce=second.nonce, version=second.version_info)

            def counted() -> dict[str, float] | None:
                families = scrape(port)
                values = {name: sum(s.value for s in families.get(name, ()) if s.name.endswith("_total")
                                    or name == "controlplane_xds_streams")
                          for name in ("controlplane_xds_streams", "controlplane_xds_responses",
                                       "controlplane_xds_acks", "controlplane_xds_nacks")}
                return values if values["controlplane_xds_acks"] == 2 else None

            assert wait_until(counted, what="the ACKs in the metrics") == {
                "controlplane_xds_streams": 1.0, "controlplane_xds_responses": 2.0,
                "controlplane_xds_acks": 2.0, "controlplane_xds_nacks": 1.0}
            stream.close()
    finally:
        plane.kill()


def test_a_subscription_to_too_many_names_is_resource_exhausted_and_the_server_goes_on(
    service_name: str, backends: Callable[..., Backend], raw: Callable[[str], RawStream]
) -> None:
    from controlplane.xds.ads import MAX_NAMES

    greedy = raw("greedy")
    greedy.send(CLUSTER, [f"{service_name}@{n}" for n in range(MAX_NAMES + 1)])
    with pytest.raises(grpc.RpcError) as refused:
        greedy.receive()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {MAX_NAMES}" in refused.value.details()
    backends(service_name, f"{service_name}-a")
    modest = raw("modest")
    modest.send(CLUSTER, [service_name])
    assert [w.Cluster.FromString(r.value).name for r in modest.receive().resources] == [service_name]
