"""controlplane.v1.XdsStatusService: the ADS streams of this replica and where each subscription stands."""

from __future__ import annotations

import functools

import grpc

from controlplane import paging
from controlplane.config.wire import timestamp
from controlplane.errors import ValidationError, maps_domain_errors
from controlplane.text import decimal
from controlplane.v1 import xds_pb2, xds_pb2_grpc
from controlplane.xds.ads import AggregatedDiscovery, Stream


class XdsStatusServicer(xds_pb2_grpc.XdsStatusServiceServicer):
    def __init__(self, ads: AggregatedDiscovery) -> None:
        self._ads = ads

    @maps_domain_errors
    async def ListXdsClients(self, request: xds_pb2.ListXdsClientsRequest, context: grpc.aio.ServicerContext
                             ) -> xds_pb2.ListXdsClientsResponse:
        after = decimal(request.page_token, 18) if request.page_token else 0
        if after is None:
            raise ValidationError.single("page_token", "must be a next_page_token from an earlier answer")
        counters = self._ads.counters
        response = xds_pb2.ListXdsClientsResponse(counters=xds_pb2.XdsCounters(
            responses=counters.responses, acks=counters.acks, nacks=counters.nacks, refused=counters.refused))
        # What clients send about themselves is cut to size, but one stream may still hold a few hundred KiB
        # of names: pages end by bytes too.
        more = paging.fill(response.clients, ((stream_id, functools.partial(_client, stream))
                                              for stream_id, stream in sorted(self._ads.streams.items())
                                              if stream_id > after),
                           size=paging.page_size(request.page_size), used=response.ByteSize())
        response.next_page_token = "" if more is None else str(more)
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
