"""`controlplane xds bootstrap|status`: a bootstrap for stock gRPC clients, and what each replica's ADS streams hold."""

from __future__ import annotations

from controlplane import endpoints, paging
from controlplane.client import ClientTLS, as_connection
from controlplane.v1 import xds_pb2, xds_pb2_grpc
from controlplane.xds.bootstrap import bootstrap_json


def bootstrap(control_plane: str, node_id: str, cluster: str, zone: str, environment: str) -> int:
    """Print a bootstrap naming every control-plane replica (clients that support xDS fallback, gRFC A71,
    move to the next when one is down; others use the first)."""
    print(bootstrap_json(endpoints.parse(control_plane), node_id, cluster=cluster, zone=zone,
                         environment=environment, tls=ClientTLS.from_env()))
    return 0


def status(control_plane: str) -> int:
    """Each replica's ADS streams (ask every replica: a stream lives on the one it reached)."""
    for address in endpoints.parse(control_plane):
        with as_connection(address).channel() as channel:
            pages = paging.every_page(xds_pb2_grpc.XdsStatusServiceStub(channel).ListXdsClients,
                                      xds_pb2.ListXdsClientsRequest(), timeout=5)
        counters = pages[0].counters
        clients = [client for page in pages for client in page.clients]
        print(f"{address}: {len(clients)} ADS streams; responses {sum(counters.responses.values())}, "
              f"ACKs {sum(counters.acks.values())}, NACKs {sum(counters.nacks.values())}, "
              f"refused before sending {counters.refused}")
        for client in clients:
            environment = client.environment or "default"
            print(f"  {client.node_id or '?'} ({client.peer}) {client.user_agent} env={environment}")
            for sub in client.subscriptions:
                state = "up to date" if sub.acked_version == sub.sent_version else f"acked {sub.acked_version or '-'}"
                line = f"    {sub.type_url.rsplit('.', 1)[-1]:<22} {','.join(sub.resource_names) or '-'}  " \
                       f"version {sub.sent_version or '-'} ({state})"
                if sub.last_nack:
                    line += f"  NACK x{sub.nacks}: {sub.last_nack}"
                print(line)
    return 0
