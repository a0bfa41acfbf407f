"""controlplane.v1.XdsStatusService: the ADS streams of this replica and where each subscription stands."""

from __future__ import annotations

import grpc

from controlplane.config.wire import timestamp
from controlplane.errors import ValidationError, maps_domain_errors
from controlplane.text import decimal
from controlplane.v1 import xds_pb2, xds_pb2_grpc
from controlplane.xds.ads import AggregatedDiscovery, Stream

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# What clients send about themselves is cut to size, but a stream may still hold a few hundred KiB of names:
# a page stops before this many bytes, so it fits gRPC's default 4 MiB message limit with room to spare.
MAX_PAGE_BYTES = 2**20


class XdsStatusServicer(xds_pb2_grpc.XdsStatusServiceServicer):
    def __init__(self, ads: AggregatedDiscovery) -> None:
        self._ads = ads

    @maps_domain_errors
    async def ListXdsClients(self, request: xds_pb2.ListXdsClientsRequest, context: grpc.aio.ServicerContext
                             ) -> xds_pb2.ListXdsClientsResponse:
        after = decimal(request.page_token, 18) if request.page_token else 0
        if after is None:
            raise ValidationError.single("page_token", "must be a next_page_token from an earlier answer")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        counters = self._ads.counters
        response = xds_pb2.ListXdsClientsResponse(counters=xds_pb2.XdsCounters(
            responses=counters.responses, acks=counters.acks, nacks=counters.nacks, refused=counters.refused))
        used = response.ByteSize()
        for stream_id, stream in sorted(self._ads.streams.items()):
            if stream_id <= after:
                continue
            if len(response.clients) == size:
                response.next_page_token = str(after)
                break
            client = _client(stream)
            client_bytes = client.ByteSize() + 4  # with the field's tag and length
            if response.clients and used + client_bytes > MAX_PAGE_BYTES:
                response.next_page_token = str(after)
                break
            response.clients.append(client)
            used += client_bytes
            after = stream_id
        return response


def _client(stream: Stream) -> xds_pb2.XdsClient:
    return xds_pb2.XdsClient(
        node_id=stream.node_id, node_cluster=stream.node_cluster, peer=stream.peer,
        user_agent=stream.user_agent, environment=stream.environment,
        connected_at=timestamp(stream.connected_at),
        subscriptions=[
            xds_pb2.XdsSubscription(type_url=type_url, resource_names=sorted(sub.names),
                                    sent_version=sub.sent_version, acked_version=sub.acked_version,
                                    last_nack=sub.last_nack, nacks=sub.nacks, responses=sub.responses)
            for type_url, sub in sorted(stream.subscriptions.items())
        ],
    )
