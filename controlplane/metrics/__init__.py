"""Prometheus metrics of a process: RPCs served and made, breakers, bulkheads, Consul requests.

One `Metrics` object per process holds a prometheus-client registry and the families our concerns record
into; `metrics.serve("127.0.0.1:9464")` exposes them in Prometheus' text format. RPC families follow
go-grpc-prometheus (`grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`,
`grpc_server_handling_seconds`, the `grpc_client_*` twins), so existing dashboards read them as they are.
"""

from controlplane.metrics.families import Metrics
from controlplane.metrics.rpc import ClientMetrics, ServerMetrics

__all__ = ["ClientMetrics", "Metrics", "ServerMetrics"]
