"""controlplane.v1.XdsStatusService: the ADS streams of this replica and where each subscription stands."""

from __future__ import annotations

import grpc

from controlplane.config.wire import timestamp
from controlplane.v1 import xds_pb2, xds_pb2_grpc
from controlplane.xds.ads import AggregatedDiscovery


class XdsStatusServicer(xds_pb2_grpc.XdsStatusServiceServicer):
    def __init__(self, ads: AggregatedDiscovery) -> None:
        self._ads = ads

    async def ListXdsClients(self, request: xds_pb2.ListXdsClientsRequest, context: grpc.aio.ServicerContext
                             ) -> xds_pb2.ListXdsClientsResponse:
        counters = self._ads.counters
        response = xds_pb2.ListXdsClientsResponse(counters=xds_pb2.XdsCounters(
            responses=counters.responses, acks=counters.acks, nacks=counters.nacks, refused=counters.refused))
        for stream in list(self._ads.streams.values()):
            response.clients.append(xds_pb2.XdsClient(
                node_id=stream.node_id, node_cluster=stream.node_cluster, peer=stream.peer,
                user_agent=stream.user_agent, environment=stream.environment,
                connected_at=timestamp(stream.connected_at),
                subscriptions=[
                    xds_pb2.XdsSubscription(type_url=type_url, resource_names=sorted(sub.names),
                                            sent_version=sub.sent_version, acked_version=sub.acked_version,
                                            last_nack=sub.last_nack, nacks=sub.nacks, responses=sub.responses)
                    for type_url, sub in sorted(stream.subscriptions.items())
                ],
            ))
        return response
