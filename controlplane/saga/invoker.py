"""Generic unary calls to saga participants, found through the registry's instance cache.

Requests are built from JSON with the method's message classes (see methods.py and messages.py);
responses come back as JSON. Every call carries the step's `idempotency-key` and the saga's trace.
Channels are built in one place, `participant_channel`, with the shared client interceptors
(deadlines, circuit breaking, tracing) from controlplane.interceptors; the invoker keeps the
breakers of all its channels in one registry, so it can tell a call its own breaker refused (that
never reached the participant) from one the participant failed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace

from controlplane import endpoints
from controlplane.errors import DomainError
from controlplane.interceptors import BreakerOpen, BreakerRegistry, ClientPolicy, State
from controlplane.registry.cache import InstanceCache
from controlplane.registry.model import Instance, InstanceFilter, visible
from controlplane.saga import messages
from controlplane.saga.methods import MethodSpec

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "idempotency-key"
SAGA_ID_KEY = "x-saga-id"
# Failures after which the call may or may not have taken effect, and trying again may work.
RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
})
UNCERTAIN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED})

Resolve = Callable[[str], Awaitable[Sequence[Instance]]]
ChannelFactory = Callable[[str, BreakerRegistry], grpc.aio.Channel]


class CallFailed(Exception):
    """A participant call failed with `code`; `retryable` says whether trying again may help.

    `refused` is set when this process's circuit breaker refused the call, so it never reached the
    participant; `retry_after` is then the seconds until the breaker lets a trial call through (None:
    it is half-open and its trial calls are all taken).
    """

    def __init__(self, code: grpc.StatusCode, message: str, *, refused: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.refused = refused
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @property
    def outcome_unknown(self) -> bool:
        """The call may have taken effect although it failed (never when it was refused locally)."""
        return not self.refused and self.code in UNCERTAIN


def tracing_recorded() -> bool:
    """Whether this process exports spans (else client spans would cost CPU for nothing): an OpenTelemetry
    SDK is installed and the exporter chosen by the environment (see controlplane.interceptors) is not
    "none"."""
    from controlplane.interceptors import TracingSettings

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    try:
        return TracingSettings.from_env().exporter != "none"
    except ValueError:
        return True


def participant_channel(target: str, breakers: BreakerRegistry, policy: ClientPolicy | None = None,
                        *, tracing: bool = False, credentials: grpc.ChannelCredentials | None = None
                        ) -> grpc.aio.Channel:
    """The channel to one participant instance: the one place participant channels are built.

    Calls go through the shared client interceptors: deadlines, a circuit breaker per instance (kept in
    `breakers`), and OpenTelemetry client spans when `tracing`; over TLS with `credentials`.
    """
    from controlplane.interceptors import aio_client_interceptors

    policy = policy or ClientPolicy()
    interceptors = aio_client_interceptors(policy, instance=target, tracing=tracing,
                                           breakers=breakers if policy.breaker is not None else None)
    return endpoints.aio_dial(target, credentials, interceptors=interceptors)


@contextlib.contextmanager
def _trace_context(trace_id: str, traced: bool, metadata: list[tuple[str, str]]) -> Iterator[None]:
    """Make the saga's trace the parent of a participant call, so all of a saga's calls share one trace.

    With spans recorded (`traced`), the saga's trace becomes the current context and the tracing
    interceptor propagates it; otherwise the W3C `traceparent` header is added to `metadata` directly.
    """
    try:
        trace_number = int(trace_id, 16)
    except ValueError:
        yield
        return
    span_id = secrets.randbits(63) + 1
    if not traced:
        metadata.append(("traceparent", f"00-{trace_id}-{span_id:016x}-01"))
        yield
        return
    span_context = trace.SpanContext(trace_id=trace_number, span_id=span_id, is_remote=True,
                                     trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        yield
    finally:
        otel_context.detach(token)


def cache_resolver(cache: InstanceCache) -> Resolve:
    """Healthy instances of a service, from the control plane's own instance cache."""

    healthy: dict[str, tuple[object, Sequence[Instance]]] = {}  # service -> (instances seen, healthy ones)

    async def resolve(service: str) -> Sequence[Instance]:
        try:
            snapshot = await cache.current(service)
        except DomainError as exc:
            raise CallFailed(grpc.StatusCode.UNAVAILABLE, f"cannot resolve {service}: {exc.message}") from exc
        seen = healthy.get(service)
        if seen is None or seen[0] is not snapshot.value:  # a snapshot's value is replaced, never changed
            seen = healthy[service] = (snapshot.value, visible(snapshot.value or (), InstanceFilter(),
                                                               include_unhealthy=False))
        return seen[1]

    return resolve


class Invoker:
    """Calls a unary method on some healthy instance of a service, round robin.

    policy: the client policy of participant calls (default `ClientPolicy()`); its breaker policy
    applies to the breaker of every participant instance. tracing: whether calls get client spans and
    join the saga's trace through OpenTelemetry (default: when this process exports spans, see
    `tracing_recorded`); decided once, as the exporter is chosen at process start. credentials: TLS (and the
    control plane's client certificate) towards participants; None for plaintext.
    """

    def __init__(self, resolve: Resolve, channel_factory: ChannelFactory | None = None, *,
                 policy: ClientPolicy | None = None, tracing: bool | None = None,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self._resolve = resolve
        self._credentials = credentials
        self._policy = policy or ClientPolicy()
        self._tracing = tracing_recorded() if tracing is None else tracing
        self._channel_factory = channel_factory or self._default_channel
        self.breakers = BreakerRegistry(self._policy.breaker)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable] = {}
        self._turn = itertools.count()

    def _default_channel(self, target: str, breakers: BreakerRegistry) -> grpc.aio.Channel:
        return participant_channel(target, breakers, self._policy, tracing=self._tracing,
                                   credentials=self._credentials)

    async def call(
        self,
        service: str,
        method: MethodSpec,
        payload: Mapping[str, Any],
        *,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
        trace_id: str = "",
    ) -> dict[str, Any]:
        """The response as JSON (proto field names). Raises CallFailed with the failure's status code.

        `timeout` is in seconds; `trace_id` (32 hex digits) makes the call part of that trace.
        """
        try:
            request = messages.to_message(payload, method.request_type)
        except json_format.ParseError as exc:
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, f"request cannot be built: {exc}") from exc
        instances = await self._resolve(service)
        if not instances:
            raise CallFailed(grpc.StatusCode.UNAVAILABLE, f"no healthy instance of {service}")
        instance = instances[next(self._turn) % len(instances)]
        target = f"{instance.address}:{instance.port}"
        sent = list(metadata)
        try:
            with _trace_context(trace_id, self._tracing, sent):
                response: Message = await self._callable(target, method)(request, timeout=timeout, metadata=sent)
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from exc
        except grpc.RpcError as exc:  # a sync-style local error
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNAVAILABLE
            raise CallFailed(code, str(exc)) from exc
        return messages.to_json(response)

    @staticmethod
    def _failure(exc: grpc.aio.AioRpcError) -> CallFailed:
        """CallFailed for a failed call, marked `refused` when this invoker's own breaker refused it: the
        error then carries the breaker's typed refusal as `.cause`, which no participant can send."""
        code, details = exc.code(), exc.details() or ""
        refusal = getattr(exc, "cause", None)
        if not isinstance(refusal, BreakerOpen):
            return CallFailed(code, details)
        return CallFailed(code, details, refused=True,
                          retry_after=refusal.retry_in if refusal.state is State.OPEN else None)

    def _callable(self, target: str, method: MethodSpec) -> grpc.aio.UnaryUnaryMultiCallable:
        found = self._callables.get((target, method.path))
        if found is None:
            channel = self._channels.get(target)
            if channel is None:
                channel = self._channels[target] = self._channel_factory(target, self.breakers)
            found = channel.unary_unary(
                method.path,
                request_serializer=method.request_type.SerializeToString,
                response_deserializer=method.response_type.FromString,
            )
            self._callables[(target, method.path)] = found
        return found

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        self._callables.clear()
        for channel in channels:
            await channel.close()
