"""The whole stack in one call: tracing, deadlines, bulkheads and circuit breaking, sync or asyncio.

Client order, outermost first: tracing (the span covers everything below, including local refusals),
bulkhead (a call waiting for a slot has not started its deadline yet), deadlines (a spent budget fails
before it can count against the breaker), circuit breaker (judges only calls that went to the network).
All concerns, spans included, share one gRPC interceptor: the stack costs one interceptor layer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from controlplane.interceptors import retries
from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._config import from_mapping
from controlplane.interceptors._server import AioServerInterceptor, ServerInterceptor
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.breaker import BreakerConcern, BreakerPolicy, BreakerRegistry
from controlplane.interceptors.bulkhead import BulkheadConcern, BulkheadPolicy, BulkheadRegistry
from controlplane.interceptors.call import ClientConcern, Clock, ServerConcern
from controlplane.interceptors.deadlines import DeadlineCapture, DeadlineConcern, DeadlinePolicy
from controlplane.interceptors.decoding import AioRefuseUndecodable, RefuseUndecodable
from controlplane.interceptors.retries import RetryPolicy
from controlplane.interceptors.spans import ClientSpans, ServerSpans

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "ClientPolicy",
    "aio_client_interceptors",
    "aio_server_interceptors",
    "channel_options",
    "client_interceptors",
    "server_interceptors",
]


@dataclass(frozen=True)
class ClientPolicy:
    """Every client-side policy; None switches a concern off.

    deadlines: default deadlines and budget propagation (on by default: 30 s for calls that set none).
    breaker: circuit breaking per target service (on by default).
    bulkhead: a cap on calls in flight per target service (off by default: no cap fits every app).
    retry: gRPC retries for the methods named idempotent, applied by `channel_options()` (off by default).
    """

    deadlines: DeadlinePolicy | None = field(default_factory=DeadlinePolicy)
    breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)
    bulkhead: BulkheadPolicy | None = None
    retry: RetryPolicy | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientPolicy:
        """From e.g. `{"breaker": {"wait_in_open": 5}, "bulkhead": {"max_concurrent": 20}, "retry": null}`.

        A section that is left out keeps its default; a section set to null switches the concern off.
        """
        return from_mapping(cls, data)

    @classmethod
    def from_json(cls, text: str) -> ClientPolicy:
        return cls.from_dict(json.loads(text))


def _client_concerns(
    policy: ClientPolicy,
    tracing: bool,
    tracer_provider: TracerProvider | None,
    instance: str | None,
    breakers: BreakerRegistry | None,
    bulkheads: BulkheadRegistry | None,
    clock: Clock,
) -> list[ClientConcern]:
    concerns: list[ClientConcern] = []
    if tracing:
        concerns.append(ClientSpans(tracer_provider))
    if policy.bulkhead is not None or bulkheads is not None:
        concerns.append(BulkheadConcern(bulkheads or BulkheadRegistry(policy.bulkhead), instance))
    if policy.deadlines is not None:
        concerns.append(DeadlineConcern(policy.deadlines))
    if policy.breaker is not None or breakers is not None:
        concerns.append(BreakerConcern(breakers or BreakerRegistry(policy.breaker, clock=clock), instance))
    return concerns


def client_interceptors(
    policy: ClientPolicy | None = None,
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    instance: str | None = None,
    breakers: BreakerRegistry | None = None,
    bulkheads: BulkheadRegistry | None = None,
    clock: Clock = time.monotonic,
) -> list[Any]:
    """Interceptors for a sync channel: `grpc.intercept_channel(channel, *client_interceptors(policy))`.

    tracing: OpenTelemetry client spans (global tracer provider unless `tracer_provider` is given).
    instance: the address the channel talks to; when set, breakers and bulkheads are per (service, instance).
    breakers, bulkheads: registries to share between channels or to read metrics from; when given, they
        replace `policy.breaker` / `policy.bulkhead` (their own policy applies).
    clock: the monotonic clock (seconds) of the breakers created here; tests inject a fake one.
    """
    policy = policy or ClientPolicy()
    concerns = _client_concerns(policy, tracing, tracer_provider, instance, breakers, bulkheads, clock)
    return [ClientInterceptor(concerns)] if concerns else []


def aio_client_interceptors(
    policy: ClientPolicy | None = None,
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    instance: str | None = None,
    breakers: BreakerRegistry | None = None,
    bulkheads: BulkheadRegistry | None = None,
    clock: Clock = time.monotonic,
) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a grpc.aio channel: `grpc.aio.insecure_channel(target, interceptors=...)`.

    Same arguments as `client_interceptors`.
    """
    policy = policy or ClientPolicy()
    concerns = _client_concerns(policy, tracing, tracer_provider, instance, breakers, bulkheads, clock)
    return aio_client_chain(concerns) if concerns else []


def _server_concerns(tracing: bool, tracer_provider: TracerProvider | None, clock: Clock) -> list[ServerConcern]:
    concerns: list[ServerConcern] = [ServerSpans(tracer_provider)] if tracing else []
    concerns.append(DeadlineCapture(clock))
    return concerns


def server_interceptors(
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    clock: Clock = time.monotonic,
) -> list[grpc.ServerInterceptor]:
    """Interceptors for a sync server: `grpc.server(pool, interceptors=server_interceptors())`.

    A request that cannot be decoded answers INVALID_ARGUMENT (not UNKNOWN or INTERNAL); server spans
    that continue the caller's trace, `x-trace-id` in every response's trailing metadata,
    and the request's deadline captured as the budget of the calls its handler makes.
    """
    return [RefuseUndecodable(), ServerInterceptor(_server_concerns(tracing, tracer_provider, clock))]


def aio_server_interceptors(
    *,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    clock: Clock = time.monotonic,
) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors for a grpc.aio server: `grpc.aio.server(interceptors=aio_server_interceptors())`."""
    return [AioRefuseUndecodable(), AioServerInterceptor(_server_concerns(tracing, tracer_provider, clock))]


def channel_options(policy: ClientPolicy | RetryPolicy | None = None) -> list[tuple[str, Any]]:
    """Channel options carrying the retry policy as gRPC service config (empty when there is none)."""
    if isinstance(policy, ClientPolicy):
        policy = policy.retry
    return retries.channel_options(policy)
