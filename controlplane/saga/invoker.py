"""Generic unary calls to saga participants, found through the registry's instance cache.

Requests are built from JSON with json_format and the method's message classes (see methods.py);
responses come back as JSON. Every call carries the step's `idempotency-key` and the saga's trace.
Channels are built in one place, `participant_channel`, with the shared client interceptors
(deadlines, circuit breaking, tracing) from controlplane.interceptors.
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

from controlplane.errors import DomainError
from controlplane.registry.cache import InstanceCache
from controlplane.registry.model import Instance, InstanceFilter, visible
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
ChannelFactory = Callable[[str], grpc.aio.Channel]


class CallFailed(Exception):
    """A participant call failed with `code`; `retryable` says whether trying again may help."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @property
    def outcome_unknown(self) -> bool:
        """The call may have taken effect although it failed."""
        return self.code in UNCERTAIN


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


def participant_channel(target: str, policy_json: str = "") -> grpc.aio.Channel:
    """The channel to one participant instance: the one place participant channels are built.

    Calls go through the shared client interceptors (deadlines, circuit breaker per instance, and
    OpenTelemetry client spans when an SDK records them).
    """
    from controlplane.interceptors import ClientPolicy, aio_client_interceptors

    policy = ClientPolicy.from_json(policy_json) if policy_json else ClientPolicy()
    interceptors = aio_client_interceptors(policy, instance=target, tracing=tracing_recorded())
    return grpc.aio.insecure_channel(target, interceptors=interceptors)


@contextlib.contextmanager
def saga_trace(trace_id: str, metadata: list[tuple[str, str]]) -> Iterator[None]:
    """Make the saga's trace the parent of a participant call, so all of a saga's calls share one trace.

    With an SDK recording spans, the saga's trace becomes the current context and the tracing interceptor
    propagates it; otherwise the W3C `traceparent` header is added to `metadata` directly.
    """
    try:
        trace_number = int(trace_id, 16)
    except ValueError:
        yield
        return
    span_id = secrets.randbits(63) + 1
    if not tracing_recorded():
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

    async def resolve(service: str) -> Sequence[Instance]:
        try:
            snapshot = await cache.current(service)
        except DomainError as exc:
            raise CallFailed(grpc.StatusCode.UNAVAILABLE, f"cannot resolve {service}: {exc.message}") from exc
        return visible(snapshot.value or (), InstanceFilter(), include_unhealthy=False)

    return resolve


class Invoker:
    """Calls a unary method on some healthy instance of a service, round robin."""

    def __init__(self, resolve: Resolve, channel_factory: ChannelFactory = participant_channel) -> None:
        self._resolve = resolve
        self._channel_factory = channel_factory
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable] = {}
        self._turn = itertools.count()

    async def call(
        self,
        service: str,
        method: MethodSpec,
        payload: Mapping[str, Any],
        *,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> dict[str, Any]:
        """The response as JSON (proto field names). Raises CallFailed with the failure's status code."""
        try:
            request = json_format.ParseDict(dict(payload), method.request_type())
        except json_format.ParseError as exc:
            raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, f"request cannot be built: {exc}") from exc
        instances = await self._resolve(service)
        if not instances:
            raise CallFailed(grpc.StatusCode.UNAVAILABLE, f"no healthy instance of {service}")
        instance = instances[next(self._turn) % len(instances)]
        target = f"{instance.address}:{instance.port}"
        try:
            response: Message = await self._callable(target, method)(
                request, timeout=timeout, metadata=tuple(metadata)
            )
        except grpc.aio.AioRpcError as exc:
            raise CallFailed(exc.code(), exc.details() or "") from exc
        except grpc.RpcError as exc:  # a local refusal (e.g. an open circuit breaker)
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNAVAILABLE
            raise CallFailed(code, str(exc)) from exc
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def _callable(self, target: str, method: MethodSpec) -> grpc.aio.UnaryUnaryMultiCallable:
        found = self._callables.get((target, method.path))
        if found is None:
            channel = self._channels.get(target)
            if channel is None:
                channel = self._channels[target] = self._channel_factory(target)
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
