"""Interceptors any gRPC app can reuse: tracing, deadline budgets, circuit breaking, bulkheads, retries.

Sync and asyncio, client and server, unary and streaming. Depends only on grpcio, protobuf and
opentelemetry-api at import time (the OpenTelemetry SDK and gRPC instrumentation load when used)::

    from controlplane.interceptors import client_interceptors, intercepted_channel, server_interceptors, setup_tracing

    setup_tracing("orders")
    channel = intercepted_channel(grpc.insecure_channel(target), *client_interceptors())
    server = grpc.server(pool, interceptors=server_interceptors())
    aio = intercepted_aio_channel(target, aio_client_interceptors())  # grpc.aio

See docs/interceptors.md.
"""

from controlplane.interceptors.aio_channel import intercepted_aio_channel
from controlplane.interceptors.breaker import (
    BREAKER_RETRY_AFTER_KEY,
    BREAKER_STATE_KEY,
    BreakerEvent,
    BreakerEventKind,
    BreakerOpen,
    BreakerPolicy,
    BreakerRegistry,
    BreakerSnapshot,
    CircuitBreaker,
    State,
    StateChange,
)
from controlplane.interceptors.bulkhead import (
    BULKHEAD_KEY,
    Bulkhead,
    BulkheadEvent,
    BulkheadEventKind,
    BulkheadFull,
    BulkheadPolicy,
    BulkheadRegistry,
    BulkheadSnapshot,
)
from controlplane.interceptors.call import (
    CallKind,
    ClientConcern,
    IncomingCall,
    Outcome,
    OutgoingCall,
    Rejection,
    Scope,
    ServerConcern,
)
from controlplane.interceptors.channel import intercepted_channel
from controlplane.interceptors.deadlines import (
    DEADLINE_EXCEEDED_KEY,
    Budget,
    BudgetSpent,
    DeadlinePolicy,
    current_budget,
    deadline_budget,
)
from controlplane.interceptors.live import LivePolicy
from controlplane.interceptors.local_errors import LocalAioRpcError, LocalRpcError
from controlplane.interceptors.methods import MethodSelector
from controlplane.interceptors.retries import RetryPolicy, RetryThrottling, service_config
from controlplane.interceptors.stack import (
    ClientPolicy,
    aio_client_interceptors,
    aio_server_interceptors,
    channel_options,
    client_interceptors,
    server_interceptors,
)
from controlplane.interceptors.tracing import (
    TRACE_ID_KEY,
    TraceContextFilter,
    TracingSettings,
    current_trace_id,
    setup_tracing,
    trace_id_in,
    trace_id_of,
)

__all__ = [
    "BREAKER_RETRY_AFTER_KEY",
    "BREAKER_STATE_KEY",
    "BULKHEAD_KEY",
    "DEADLINE_EXCEEDED_KEY",
    "TRACE_ID_KEY",
    "BreakerEvent",
    "BreakerEventKind",
    "BreakerOpen",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerSnapshot",
    "Budget",
    "BudgetSpent",
    "Bulkhead",
    "BulkheadEvent",
    "BulkheadEventKind",
    "BulkheadFull",
    "BulkheadPolicy",
    "BulkheadRegistry",
    "BulkheadSnapshot",
    "CallKind",
    "CircuitBreaker",
    "ClientConcern",
    "ClientPolicy",
    "DeadlinePolicy",
    "IncomingCall",
    "LivePolicy",
    "LocalAioRpcError",
    "LocalRpcError",
    "MethodSelector",
    "Outcome",
    "OutgoingCall",
    "Rejection",
    "RetryPolicy",
    "RetryThrottling",
    "Scope",
    "ServerConcern",
    "State",
    "StateChange",
    "TraceContextFilter",
    "TracingSettings",
    "aio_client_interceptors",
    "aio_server_interceptors",
    "channel_options",
    "client_interceptors",
    "current_budget",
    "current_trace_id",
    "deadline_budget",
    "intercepted_aio_channel",
    "intercepted_channel",
    "server_interceptors",
    "service_config",
    "setup_tracing",
    "trace_id_in",
    "trace_id_of",
]
