"""The whole stack in one call: tracing, deadlines, bulkheads and circuit breaking, sync or asyncio.

Client order, outermost first: tracing (the span covers everything below, including local refusals),
bulkhead (a call waiting for a slot has not started its deadline yet), deadlines (a spent budget fails
before it can count against the breaker), circuit breaker (judges only calls that went to the network).
All concerns, spans included, share one gRPC interceptor: the stack costs one interceptor layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from controlplane.interceptors import retries
from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._server import AioServerInterceptor, ServerInterceptor
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.breaker import BreakerConcern, BreakerRegistry
from controlplane.interceptors.bulkhead import BulkheadConcern, BulkheadRegistry
from controlplane.interceptors.call import ClientConcern, Clock, ServerConcern
from controlplane.interceptors.deadlines import DeadlineCapture, DeadlineConcern
from controlplane.interceptors.decoding import AioRefuseUndecodable, RefuseUndecodable
from controlplane.interceptors.live import LivePolicy
from controlplane.interceptors.methods import MethodSelector
from controlplane.interceptors.policy import ClientPolicy
from controlplane.interceptors.retries import RetryPolicy
from controlplane.interceptors.spans import (
    ClientSpans,
    ClientTraceIds,
    RequestHook,
    ResponseHook,
    ServerSpans,
    ServerTraceIds,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from controlplane.metrics import Metrics

__all__ = [
    "ClientPolicy",
    "LivePolicy",
    "aio_client_interceptors",
    "aio_server_interceptors",
    "channel_options",
    "client_interceptors",
    "server_interceptors",
]


@dataclass(frozen=True)
class _Tracing:
    """How a client stack traces: spans (or only trace ids), for which methods, with which hooks."""

    on: bool
    provider: TracerProvider | None
    methods: MethodSelector | None = None
    request_hook: RequestHook | None = None
    response_hook: ResponseHook | None = None

    def concern(self) -> ClientConcern:
        if not self.on:
            return ClientTraceIds()  # x-trace-id stays, whoever makes the spans
        return ClientSpans(self.provider, self.methods, self.request_hook, self.response_hook)


def _client_concerns(
    policy: ClientPolicy | LivePolicy,
    tracing: _Tracing,
    instance: str | None,
    breakers: BreakerRegistry | None,
    bulkheads: BulkheadRegistry | None,
    clock: Clock,
    metrics: Metrics | None = None,
) -> list[ClientConcern]:
    concerns: list[ClientConcern] = [tracing.concern()]
    if metrics is not None:  # outside the others: local refusals are counted with their status
        from controlplane.metrics import ClientMetrics

        concerns.append(ClientMetrics(metrics))
    if isinstance(policy, LivePolicy):
        return concerns + _live_concerns(policy, instance, breakers, bulkheads)
    if policy.bulkhead is not None or bulkheads is not None:
        concerns.append(BulkheadConcern(bulkheads or BulkheadRegistry(policy.bulkhead), instance))
    if policy.deadlines is not None:
        concerns.append(DeadlineConcern(policy.deadlines))
    if policy.breaker is not None or breakers is not None:
        concerns.append(BreakerConcern(breakers or BreakerRegistry(policy.breaker, clock=clock), instance))
    return concerns


def _live_concerns(
    live: LivePolicy, instance: str | None, breakers: BreakerRegistry | None, bulkheads: BulkheadRegistry | None
) -> list[ClientConcern]:
    """Every concern, each following its section of the live policy (a section set to None passes calls
    through); breakers and bulkheads are the live policy's own registries unless others are given."""
    concerns: list[BulkheadConcern | DeadlineConcern | BreakerConcern] = [
        BulkheadConcern(bulkheads or live.bulkheads, instance, live=True),
        DeadlineConcern(),
        BreakerConcern(breakers or live.breakers, instance),
    ]
    for concern in concerns:
        concern.follow(live.policy)
        live.follow_weakly(concern)
    return list(concerns)


def client_interceptors(
    policy: ClientPolicy | LivePolicy | None = None,
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    instance: str | None = None,
    breakers: BreakerRegistry | None = None,
    bulkheads: BulkheadRegistry | None = None,
    clock: Clock = time.monotonic,
    traced_methods: MethodSelector | None = None,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    metrics: Metrics | None = None,
) -> list[grpc.UnaryUnaryClientInterceptor]:
    """Interceptors for a sync channel: `grpc.intercept_channel(channel, *client_interceptors(policy))`.

    policy: a `ClientPolicy`, or a `LivePolicy` whose changes apply to these interceptors as they run.
    tracing: OpenTelemetry client spans (global tracer provider unless `tracer_provider` is given); off,
        failed calls still carry the trace id of the current span (`x-trace-id`), whoever made it.
    traced_methods, request_hook, response_hook: which methods get spans (default all), and the
        instrumentation's hooks: `request_hook(span, request)`, `response_hook(span, response)`.
    metrics: a `controlplane.metrics.Metrics` to count and time the calls in (grpc_client_* families).
    instance: the address the channel talks to; when set, breakers and bulkheads are per (service, instance).
    breakers, bulkheads: registries to share between channels or to read metrics from; when given, they
        replace `policy.breaker` / `policy.bulkhead` (their own policy applies).
    clock: the monotonic clock (seconds) of the breakers created here; tests inject a fake one.
    """
    traces = _Tracing(tracing, tracer_provider, traced_methods, request_hook, response_hook)
    concerns = _client_concerns(policy or ClientPolicy(), traces, instance, breakers, bulkheads, clock, metrics)
    return [ClientInterceptor(concerns)]


def aio_client_interceptors(
    policy: ClientPolicy | LivePolicy | None = None,
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    instance: str | None = None,
    breakers: BreakerRegistry | None = None,
    bulkheads: BulkheadRegistry | None = None,
    clock: Clock = time.monotonic,
    traced_methods: MethodSelector | None = None,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    metrics: Metrics | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a grpc.aio channel: `grpc.aio.insecure_channel(target, interceptors=...)`.

    Same arguments as `client_interceptors`.
    """
    traces = _Tracing(tracing, tracer_provider, traced_methods, request_hook, response_hook)
    concerns = _client_concerns(policy or ClientPolicy(), traces, instance, breakers, bulkheads, clock, metrics)
    return aio_client_chain(concerns)


def _server_concerns(tracing: bool, tracer_provider: TracerProvider | None, clock: Clock,
                     traced_methods: MethodSelector | None, metrics: Metrics | None) -> list[ServerConcern]:
    concerns: list[ServerConcern] = []
    if metrics is not None:
        from controlplane.metrics import ServerMetrics

        concerns.append(ServerMetrics(metrics))
    concerns.append(ServerSpans(tracer_provider, traced_methods) if tracing else ServerTraceIds())
    concerns.append(DeadlineCapture(clock))
    return concerns


def server_interceptors(
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    clock: Clock = time.monotonic,
    traced_methods: MethodSelector | None = None,
    metrics: Metrics | None = None,
) -> list[grpc.ServerInterceptor]:
    """Interceptors for a sync server: `grpc.server(pool, interceptors=server_interceptors())`.

    A request that cannot be decoded answers INVALID_ARGUMENT (not UNKNOWN or INTERNAL); server spans
    that continue the caller's trace, `x-trace-id` in every response's trailing metadata,
    and the request's deadline captured as the budget of the calls its handler makes. tracing off: no
    spans of ours, but responses still carry the trace id of the current span (an app's own spans).
    traced_methods: which methods get spans (default: all but health checks, see `spans.traced_methods`).
    metrics: a `controlplane.metrics.Metrics` to count and time handled calls in (grpc_server_* families).
    """
    concerns = _server_concerns(tracing, tracer_provider, clock, traced_methods, metrics)
    return [RefuseUndecodable(), ServerInterceptor(concerns)]


def aio_server_interceptors(
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    clock: Clock = time.monotonic,
    traced_methods: MethodSelector | None = None,
    metrics: Metrics | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors for a grpc.aio server: `grpc.aio.server(interceptors=aio_server_interceptors())`."""
    concerns = _server_concerns(tracing, tracer_provider, clock, traced_methods, metrics)
    return [AioRefuseUndecodable(), AioServerInterceptor(concerns)]


def channel_options(policy: ClientPolicy | LivePolicy | RetryPolicy | None = None) -> list[tuple[str, Any]]:
    """Channel options carrying the retry policy as gRPC service config (empty when there is none).

    Options are fixed when a channel is made: a channel that follows a `LivePolicy`'s retries is remade
    with new options when they change (`DiscoveryChannel.follow(live)` does that)."""
    if isinstance(policy, LivePolicy):
        policy = policy.policy
    if isinstance(policy, ClientPolicy):
        policy = policy.retry
    return retries.channel_options(policy)
