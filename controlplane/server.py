"""The control-plane process: three gRPC services on one port, with health and reflection."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane.config.servicer import ConfigServicer
from controlplane.consul.client import connect, consul_call, observe_requests
from controlplane.interceptors import aio_server_interceptors
from controlplane.metrics import Metrics
from controlplane.registry.cache import InstanceCache
from controlplane.registry.servicer import RegistryServicer
from controlplane.registry.store import RegistryStore
from controlplane.saga.service import SagaService
from controlplane.security.authz import Authorization
from controlplane.security.policy import Policy
from controlplane.settings import ServerSettings, consul_access, outbound_tls, server_tls
from controlplane.stream_budget import StreamBudget, stream_budget
from controlplane.v1 import (
    config_pb2,
    registry_pb2,
    registry_pb2_grpc,
    saga_pb2,
    saga_pb2_grpc,
    xds_pb2,
    xds_pb2_grpc,
)
from controlplane.watch import Reachability
from controlplane.xds.ads import AggregatedDiscovery
from controlplane.xds.status import XdsStatusServicer
from controlplane.xds.views import ServiceViews

log = logging.getLogger(__name__)
PROBE_KEY = "controlplane/probe"  # never written: a consistent read of nothing still needs the leader

SERVICE_NAMES = (
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    config_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name,
    saga_pb2.DESCRIPTOR.services_by_name["SagaService"].full_name,
    xds_pb2.DESCRIPTOR.services_by_name["XdsStatusService"].full_name,
)


@dataclass
class ControlPlane:
    """A running control-plane server. Build it with `start()`, end it with `stop()`."""

    settings: ServerSettings
    port: int = 0
    _server: grpc.aio.Server | None = None
    _health: health.aio.HealthServicer = field(default_factory=health.aio.HealthServicer)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closers: list[object] = field(default_factory=list)
    _cache: InstanceCache | None = None
    _saga: SagaService | None = None
    _config: ConfigServicer | None = None
    _xds_views: ServiceViews | None = None
    xds: AggregatedDiscovery | None = None
    streams: StreamBudget | None = None
    _reachability: Reachability = field(default_factory=Reachability)
    metrics_port: int = 0  # the Prometheus endpoint's port (0: none)
    _metrics_served: Metrics | None = None

    async def start(self) -> ControlPlane:
        s = self.settings
        metrics = self._metrics()
        access = consul_access(s)
        client = connect(access, request_timeout=s.consul_timeout)
        blocking = connect(access, request_timeout=s.cache.blocking_wait + s.consul_timeout + 5.0,
                           connections=s.cache.max_watches + s.config.max_watches + 16)
        store = RegistryStore(client, blocking, agent_addr=s.consul_advertise or s.consul_addr,
                              connect_agent=lambda addr: connect(access.at(addr), request_timeout=s.consul_timeout))
        self._closers += [client, blocking, store]
        self._cache = InstanceCache(store, s.cache, reachability=self._reachability)

        # Server spans continue callers' traces; the saga's calls to participants continue the saga's.
        interceptors = list(aio_server_interceptors(metrics=metrics))
        if s.authz_policy:  # a denied call is still traced and counted, and reaches no handler
            interceptors.append(Authorization(Policy.load(s.authz_policy), store.service_of))
        # Innermost: streams are counted per caller once authorization has named it.
        self.streams = stream_budget(s.max_concurrent_rpcs, s.max_streams, s.max_streams_per_caller)
        interceptors.append(self.streams)
        server = grpc.aio.server(interceptors=interceptors, maximum_concurrent_rpcs=s.max_concurrent_rpcs)
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(store, self._cache), server)
        self._config = ConfigServicer.create(
            client, blocking, s.config, blocking_wait=s.cache.blocking_wait, backoff=s.cache.backoff,
            reachability=self._reachability,
        )
        self._config.add_to_server(server)
        # xDS for stock gRPC clients, on the same port, from the same watches as Discover and WatchConfig.
        self._xds_views = ServiceViews(self._cache.for_stream, self._config.document_for_stream,
                                       first_sync_timeout=s.cache.first_sync_timeout)
        self.xds = AggregatedDiscovery(self._xds_views, identifier=f"controlplane {socket.gethostname()}")
        self.xds.add_to_server(server)
        xds_pb2_grpc.add_XdsStatusServiceServicer_to_server(XdsStatusServicer(self.xds), server)
        if metrics is not None:
            metrics.watch_xds(self.xds)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        tls = server_tls(s)
        self.port = server.add_secure_port(s.listen, tls.credentials()) if tls else server.add_insecure_port(s.listen)
        if not self.port:
            raise OSError(f"cannot listen on {s.listen}")
        self._saga = await SagaService.start(
            s.saga, consul_addr=access, consul_timeout=s.consul_timeout, cache=self._cache,
            replica_id=s.saga.replica_id or f"{socket.gethostname()}:{self.port}",
            advertise=(_advertised_host(s.listen), self.port),
            participant_credentials=outbound.credentials() if (outbound := outbound_tls(s)) else None,
        )
        saga_pb2_grpc.add_SagaServiceServicer_to_server(self._saga.servicer, server)
        if metrics is not None:
            metrics.watch_breakers(self._saga.invoker.breakers)  # the breakers of calls to participants
            orchestrator = self._saga.orchestrator
            orchestrator.observer = metrics.watch_sagas(lambda: orchestrator.driving)
        await self._set_serving(await self._consul_serves(client))
        await server.start()
        self._server = server
        self._tasks.append(asyncio.get_running_loop().create_task(self._probe_consul(client)))
        if metrics is not None:
            metrics.watch_gc()
            self._tasks.append(asyncio.get_running_loop().create_task(metrics.watch_event_loop()))
        # What start-up allocated (modules, protobuf descriptors, clients) lives as long as the process: moved out
        # of the collector's view, a full collection no longer walks it (one took ~100 ms at 150 sagas/s).
        gc.freeze()
        log.info("control plane serving on %s (port %d), Consul at %s", s.listen, self.port, s.consul_addr)
        return self

    def _metrics(self) -> Metrics | None:
        """The process's metrics, served at `metrics_listen`; None when it is "". A port that is taken is
        logged and leaves the control plane running without the endpoint (metrics must not take it down)."""
        listen = self.settings.metrics_listen
        if not listen:
            return None
        metrics = Metrics()
        observe_requests(metrics.observe_consul)
        metrics.watch_consul_watches()
        try:
            self.metrics_port = metrics.serve(listen)
            self._metrics_served = metrics
            log.info("metrics at http://%s:%d/metrics", listen.rpartition(":")[0], self.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s (%s); running without the endpoint", listen, exc)
        return metrics

    async def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def _probe_consul(self, client: object) -> None:
        """Keep the health status and the watches' staleness in step with whether Consul can serve."""
        serving: bool | None = None
        while True:
            now = await self._consul_serves(client)
            if now != serving:
                if serving is not None:
                    log.warning("Consul %s", "serves again" if now else "cannot serve: reporting NOT_SERVING, "
                                "watched values stale")
                await self._set_serving(now)
                serving = now
            await asyncio.sleep(self.settings.consul_probe_interval)

    async def _consul_serves(self, client: object) -> bool:
        """Whether Consul answers a consistent read (one its leader confirms with a quorum) within the
        probe's timeout: what a write needs, unlike a leader's name, which followers repeat for a while
        after the leader died."""
        try:
            read = client.kv.get(PROBE_KEY, consistency="consistent")  # type: ignore[attr-defined]
            await consul_call(asyncio.wait_for(read, self.settings.consul_probe_timeout), what="probe")
            serves = True
        except Exception:  # unreachable, no leader, or any odd answer: Consul cannot serve us
            serves = False
        self._reachability.set(serves)
        return serves

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, end watch streams, let in-flight calls finish within `grace` seconds."""
        grace = self.settings.shutdown_grace if grace is None else grace
        await self._health.enter_graceful_shutdown()
        if self._metrics_served is not None:
            await asyncio.to_thread(self._metrics_served.close)
        for task in self._tasks:
            task.cancel()
        stopping = asyncio.ensure_future(self._server.stop(grace)) if self._server else None
        if self._xds_views is not None:
            await self._xds_views.stop()
        if self._cache is not None:
            await self._cache.stop()
        if self._config is not None:
            await self._config.stop()
        if stopping is not None:
            await stopping
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._saga is not None:
            await self._saga.stop()
        for closer in self._closers:
            await closer.close()  # type: ignore[attr-defined]


def _advertised_host(listen: str) -> str:
    """The host part of a listen address, as other processes on the network reach it."""
    host = listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
    return "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
