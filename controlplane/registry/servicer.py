"""controlplane.v1.RegistryService: translates and validates requests, then asks the store and cache."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from controlplane import paging
from controlplane.errors import ValidationError, maps_domain_errors, raise_if
from controlplane.registry import validation as v
from controlplane.registry.cache import InstanceCache
from controlplane.registry.model import ChangeKind, Instance, InstanceFilter, changes_between, visible
from controlplane.registry.store import GrpcCheck, Registration, RegistryStore, TtlCheck
from controlplane.registry.wire import instance_to_proto
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from controlplane.watch import BlockingQueryWatch
from controlplane.watch.quota import StreamQuota
from controlplane.wire_checks import duration_seconds

# Consul refuses DeregisterCriticalServiceAfter below one minute, and runs checks at most once a second.
MIN_DEREGISTER_AFTER = 60.0
MIN_CHECK_INTERVAL = 1.0
# A ListServices page token is the last name of the page before: a Consul service name (those registered
# outside the control plane may be outside our grammar, but Consul keeps them short).
MAX_SERVICE_NAME_TOKEN = 512


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, store: RegistryStore, cache: InstanceCache) -> None:
        self._store = store
        self._cache = cache
        self._streams = StreamQuota("Watch")

    @maps_domain_errors
    async def Register(
        self, request: registry_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegisterResponse:
        registration = registration_from(request)
        instance = await self._store.register(registration, replacing=bool(request.instance_id))
        return registry_pb2.RegisterResponse(instance=instance_to_proto(instance))

    @maps_domain_errors
    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DeregisterResponse:
        raise_if(v.check_instance_id(request.instance_id))
        await self._store.deregister(request.instance_id)
        return registry_pb2.DeregisterResponse()

    @maps_domain_errors
    async def Heartbeat(
        self, request: registry_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.HeartbeatResponse:
        raise_if(v.check_instance_id(request.instance_id) + v.check_note(request.note))
        await self._store.heartbeat(request.instance_id, request.note)
        return registry_pb2.HeartbeatResponse()

    @maps_domain_errors
    async def Discover(
        self, request: registry_pb2.DiscoverRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverResponse:
        flt = _filter_from(request.service, request.filter)
        snapshot = await self._cache.current(request.service, context.time_remaining())
        shown = visible(snapshot.value or (), flt, include_unhealthy=False)
        response = registry_pb2.DiscoverResponse(instances=[instance_to_proto(i) for i in shown], stale=snapshot.stale)
        if snapshot.synced_at is not None:
            response.synced_at.CopyFrom(_timestamp(snapshot.synced_at))
        return response

    @maps_domain_errors
    async def Watch(
        self, request: registry_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[registry_pb2.WatchResponse]:
        flt = _filter_from(request.service, request.filter)
        with self._streams.hold(context.peer()), self._cache.for_stream(request.service) as watch:
            async for response in self._watch(request, flt, watch):
                yield response

    async def _watch(self, request: registry_pb2.WatchRequest, flt: InstanceFilter,
                     watch: BlockingQueryWatch[tuple[Instance, ...]]) -> AsyncIterator[registry_pb2.WatchResponse]:
        shown: list[Instance] | None = None
        stale = False
        async for snapshot in watch.subscribe():
            everything = {i.instance_id: i for i in snapshot.value or ()}
            now = visible(everything.values(), flt, request.include_unhealthy)
            wire = [instance_to_proto(i) for i in now]
            if shown is None:
                yield registry_pb2.WatchResponse(
                    type=registry_pb2.WATCH_EVENT_TYPE_SNAPSHOT, instances=wire, stale=snapshot.stale
                )
            else:
                if snapshot.stale != stale:
                    yield registry_pb2.WatchResponse(
                        type=registry_pb2.WATCH_EVENT_TYPE_STALENESS_CHANGED,
                        instances=wire,
                        stale=snapshot.stale,
                    )
                for change in changes_between(shown, now):
                    about = change.instance
                    if change.kind == ChangeKind.REMOVED:
                        # A removed instance may still exist, unhealthy: report how it is now.
                        about = everything.get(about.instance_id, about)
                    yield registry_pb2.WatchResponse(
                        type=int(change.kind),
                        instance=instance_to_proto(about),
                        instances=wire,
                        stale=snapshot.stale,
                    )
            shown, stale = now, snapshot.stale

    @maps_domain_errors
    async def ListServices(
        self, request: registry_pb2.ListServicesRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListServicesResponse:
        after = request.page_token
        if len(after) > MAX_SERVICE_NAME_TOKEN or not after.isprintable():
            raise ValidationError.single("page_token", "must be a next_page_token from an earlier answer")
        services = await self._store.service_names()
        size = paging.page_size(request.page_size)
        names = sorted(name for name in services if name > after)[: size + 1]  # one more: is there a next page?
        found = dict(zip(names[:size], await self._store.instances_of(names[:size]), strict=True))

        def summary(name: str) -> registry_pb2.ServiceSummary:
            instances = found[name]
            return registry_pb2.ServiceSummary(
                name=name, instance_count=len(instances),
                passing_count=len(visible(instances, InstanceFilter(), include_unhealthy=False)),
                tags=services[name])

        response = registry_pb2.ListServicesResponse()
        more = paging.fill(response.services, ((name, functools.partial(summary, name)) for name in names),
                           size=size)
        response.next_page_token = more or ""
        return response


def registration_from(request: registry_pb2.RegisterRequest) -> Registration:
    """The domain registration for a request, or ValidationError listing every problem."""
    problems = (
        v.check_client_service(request.service)
        + v.check_instance_id(request.instance_id, required=False)
        + v.check_address(request.address)
        + v.check_port(request.port)
        + v.check_version(request.version)
        + v.check_tags(list(request.tags))
        + v.check_metadata(dict(request.metadata))
    )

    def seconds(duration: duration_pb2.Duration, field: str) -> float:
        value, found = duration_seconds(duration, field)
        problems.extend(found)
        return value

    check: GrpcCheck | TtlCheck = GrpcCheck()
    which = request.check.WhichOneof("kind")
    if which == "ttl":
        ttl = seconds(request.check.ttl.ttl, "check.ttl.ttl") or TtlCheck().ttl
        problems += v.check_duration(ttl, "check.ttl.ttl", 1.0, 86400.0)
        check = TtlCheck(ttl=ttl)
    elif which == "grpc":
        interval = seconds(request.check.grpc.interval, "check.grpc.interval") or GrpcCheck().interval
        timeout = seconds(request.check.grpc.timeout, "check.grpc.timeout") or interval
        problems += v.check_duration(interval, "check.grpc.interval", MIN_CHECK_INTERVAL, 3600.0)
        problems += v.check_duration(timeout, "check.grpc.timeout", 0.1, 3600.0)
        problems += v.check_health_service(request.check.grpc.health_service, "check.grpc.health_service")
        check = GrpcCheck(interval=interval, timeout=timeout, health_service=request.check.grpc.health_service)
    deregister_after = None
    if request.check.HasField("deregister_critical_after"):
        deregister_after = seconds(request.check.deregister_critical_after, "check.deregister_critical_after")
        problems += v.check_duration(
            deregister_after, "check.deregister_critical_after", MIN_DEREGISTER_AFTER, 30 * 86400.0
        )
    raise_if(problems)
    instance = Instance(
        service=request.service,
        instance_id=request.instance_id or f"{request.service}-{uuid.uuid4().hex[:12]}",
        address=request.address,
        port=request.port,
        version=request.version,
        tags=tuple(request.tags),
        metadata=dict(request.metadata),
    )
    return Registration(instance=instance, check=check, deregister_critical_after=deregister_after)


def _filter_from(service: str, flt: registry_pb2.InstanceFilter) -> InstanceFilter:
    raise_if(
        v.check_service_name(service)
        + v.check_version(flt.version, "filter.version")
        + v.check_tags(list(flt.tags), "filter.tags")
        + v.check_metadata(dict(flt.metadata), "filter.metadata")
    )
    return InstanceFilter(version=flt.version, tags=frozenset(flt.tags), metadata=dict(flt.metadata))


def _timestamp(unix_seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(unix_seconds * 1e9))
    return stamp
