"""A host for a team's own gRPC service: everything around the servicers, sync or asyncio.

    host = ServiceHost(HostSettings("orders", listen="0.0.0.0:50061", control_plane="cp:50051"))
    orders_pb2_grpc.add_OrdersServicer_to_server(Orders(host.channel_to("payments")), host.server)
    host.serve("shop.orders.v1.Orders")       # start, register, mark SERVING; block until SIGTERM; stop

What the host does: the server interceptors (undecodable requests refused, spans, x-trace-id, deadline
budgets); grpc.health.v1 whose serving status follows the host's readiness; server reflection;
self-registration with a gRPC or TTL check (heartbeats sent) and `deregister_critical_after`; the
service's config followed live (`host.config`, and the client policy of `host.channel_to` channels from
its `client_policy` section); and on SIGTERM or SIGINT a graceful stop: NOT_SERVING first (so health
checks take the instance out of rotation), deregistration, in-flight calls given `shutdown_grace`
seconds, then the spans still buffered flushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Literal

import grpc

from controlplane import endpoints
from controlplane.client.connection import Connection, as_connection
from controlplane.interceptors import (
    ClientPolicy,
    LivePolicy,
    aio_client_interceptors,
    aio_server_interceptors,
    channel_options,
    client_interceptors,
    intercepted_channel,
    server_interceptors,
)
from controlplane.security.tls import ServerTLS

__all__ = ["AioServiceHost", "HostSettings", "ServiceHost"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostSettings:
    """How a service is hosted.

    service: its registry name (lowercase letters, digits, '-').
    listen: host:port to serve on (port 0: one the OS picks; `host.port` tells which).
    control_plane: the control plane's address(es); None runs without registration or config.
    advertise: the address others dial (default: the host part of `listen`; 127.0.0.1 for 0.0.0.0).
    check: "grpc" (Consul calls grpc.health.v1) or "ttl" (the host sends heartbeats every ttl / 3 s).
    deregister_critical_after: seconds a critical instance stays registered (None: forever).
    environment: the config layer to follow ("" the default layer).
    shutdown_grace: seconds in-flight calls get on SIGTERM.
    tracing: spans of our own (off: x-trace-id still follows an app's own spans).
    reflection: serve grpc.reflection.v1alpha for the services added.
    metrics_listen: host:port of a Prometheus endpoint (RPCs served and made, breakers, bulkheads); None
        for none. A port that is taken is logged and the service runs without it.
    tls: serve TLS with this certificate (mTLS with its client CA); None serves plaintext. Calls to the
        control plane and to other services use the control plane connection's TLS (its `Connection`, or the
        CONTROLPLANE_TLS_* environment variables when `control_plane` is an address).
    discovery: how `channel_to` finds instances: "library" (a DiscoveryChannel watching the registry) or
        "xds" (gRPC's own xDS client dialing xds:///SERVICE, which follows the service's traffic policy; a
        bootstrap naming the control plane is made unless GRPC_XDS_BOOTSTRAP[_CONFIG] is set).
    """

    service: str
    listen: str = "127.0.0.1:0"
    control_plane: str | Connection | None = None
    advertise: str | None = None
    version: str = ""
    tags: tuple[str, ...] = ()
    check: Literal["grpc", "ttl"] = "grpc"
    ttl: float = 10.0
    deregister_critical_after: float | None = 60.0
    environment: str = ""
    shutdown_grace: float = 5.0
    tracing: bool = True
    reflection: bool = True
    max_workers: int = 16
    metrics_listen: str | None = None
    discovery: Literal["library", "xds"] = "library"
    tls: ServerTLS | None = None

    def advertised_host(self) -> str:
        host = self.advertise or self.listen.rpartition(":")[0] or "127.0.0.1"
        return "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host.strip("[]")


class _HostBase:
    """What the sync and asyncio hosts share: health, config, live policy, registration, span flushing."""

    def __init__(self, settings: HostSettings, policy: ClientPolicy | None) -> None:
        from grpc_health.v1 import health

        self.settings = settings
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.port = 0
        self.live_policy = LivePolicy(policy)
        self._services: list[str] = []
        self._config: Any = None
        self._registration: Any = None
        self._closers: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self.metrics_port = 0  # the Prometheus endpoint's port (0: none)
        self.metrics = self._metrics()
        self.connection = as_connection(settings.control_plane) if settings.control_plane else None

    def _metrics(self) -> Any:
        """The host's metrics (a `controlplane.metrics.Metrics`), served at `metrics_listen`; None without."""
        if self.settings.metrics_listen is None:
            return None
        from controlplane.metrics import Metrics

        metrics = Metrics()
        metrics.watch_breakers(self.live_policy.breakers)
        metrics.watch_bulkheads(self.live_policy.bulkheads)
        try:
            self.metrics_port = metrics.serve(self.settings.metrics_listen)
            self._closers.append(metrics.close)
        except OSError as exc:
            self.metrics_port = 0
            log.error("cannot serve metrics on %s (%s); running without the endpoint", self.settings.metrics_listen,
                      exc)
        return metrics

    @property
    def config(self) -> Any:
        """The service's live config (a started `ConfigClient`); None without a control plane."""
        if self._config is None and self.settings.control_plane:
            from controlplane.config.client import ConfigClient

            assert self.connection is not None
            self._config = ConfigClient(self.settings.service, self.settings.environment,
                                        self.connection).start(timeout=0)
            self._closers.append(self._config.stop)
            self._closers.append(self.live_policy.follow(self._config))
        return self._config

    def _xds_target(self, service: str) -> str:
        """xds:///SERVICE, with a bootstrap naming the control plane in this process's environment unless the
        operator gave one (gRPC reads it when the first xDS channel is made)."""
        if not (os.environ.get("GRPC_XDS_BOOTSTRAP") or os.environ.get("GRPC_XDS_BOOTSTRAP_CONFIG")):
            from controlplane.xds.bootstrap import bootstrap_json

            assert self.connection is not None
            os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = bootstrap_json(
                self.connection.addresses, f"{self.settings.service}-{self.settings.advertised_host()}-{os.getpid()}",
                cluster=self.settings.service, environment=self.settings.environment, tls=self.connection.tls)
        return f"xds:///{service}"

    def _add_port(self, server: Any) -> int:
        tls = self.settings.tls
        if tls is not None:
            return int(server.add_secure_port(self.settings.listen, tls.credentials()))
        return int(server.add_insecure_port(self.settings.listen))

    def _serving(self, serving: bool) -> None:
        from grpc_health.v1 import health_pb2

        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self._services):
            self.health.set(name, status)

    def _add_health_and_reflection(self, server: Any, services: Sequence[str]) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._services = list(services)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.settings.reflection:
            from grpc_reflection.v1alpha import reflection

            health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
            reflection.enable_server_reflection((*services, health_name, reflection.SERVICE_NAME), server)
        self._serving(False)

    def _register(self) -> None:
        settings = self.settings
        if not settings.control_plane:
            return
        from controlplane.registry.client import SelfRegistration

        self.config  # noqa: B018  (follow the config and the client policy from the start)
        self._registration = SelfRegistration(
            control_plane=self.connection or settings.control_plane, service=settings.service,
            address=settings.advertised_host(),
            port=self.port, version=settings.version, tags=settings.tags, check=settings.check, ttl=settings.ttl,
            deregister_critical_after=settings.deregister_critical_after)
        self._registration.register()

    def _deregister(self) -> None:
        if self._registration is not None:
            self._registration.deregister()
            self._registration = None

    def _close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.exception("closing %r failed", close)
        self._closers.clear()
        _flush_spans()


def _flush_spans() -> None:
    """Export the spans still buffered (an SDK provider's batch) before the process exits."""
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        try:
            flush(5_000)
        except Exception:
            log.exception("flushing spans failed")


class ServiceHost(_HostBase):
    """A sync gRPC server (thread per request) with everything around it; see the module docstring."""

    def __init__(self, settings: HostSettings, *, policy: ClientPolicy | None = None,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        super().__init__(settings, policy)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.max_workers),
                                  interceptors=server_interceptors(tracing=settings.tracing, metrics=self.metrics),
                                  options=list(options))

    def channel_to(self, service: str) -> grpc.Channel:
        """A channel to every passing instance of `service`, through the client interceptors under the
        live client policy (closed when the host stops)."""
        from controlplane.discovery import DiscoveryChannel

        if not self.settings.control_plane:
            raise ValueError("channel_to needs a control plane (HostSettings.control_plane)")
        self.config  # noqa: B018
        if self.settings.discovery == "xds":
            credentials = self.connection.credentials if self.connection else None
            channel = endpoints.dial(self._xds_target(service), credentials)
            self._closers.append(channel.close)
            return intercepted_channel(channel, *self._client_interceptors())
        assert self.connection is not None
        discovered = DiscoveryChannel(service, self.connection, options=channel_options(self.live_policy))
        self._closers.append(discovered.close)
        self._closers.append(discovered.follow(self.live_policy))
        return intercepted_channel(discovered, *self._client_interceptors())

    def control_plane_channel(self, idempotent: Sequence[str] = ()) -> grpc.Channel:
        """A channel to the control plane's replicas through the client interceptors."""
        if not self.settings.control_plane:
            raise ValueError("control_plane_channel needs a control plane (HostSettings.control_plane)")
        assert self.connection is not None
        channel = self.connection.channel(idempotent=idempotent)
        self._closers.append(channel.close)
        return intercepted_channel(channel, *self._client_interceptors())

    def _client_interceptors(self) -> list[grpc.UnaryUnaryClientInterceptor]:
        return client_interceptors(self.live_policy, tracing=self.settings.tracing, metrics=self.metrics)

    def start(self, *services: str) -> int:
        """Serve `services` (their full names, for health and reflection), register, mark SERVING; the port."""
        self._add_health_and_reflection(self.server, services)
        self.port = self._add_port(self.server)
        if not self.port:
            raise OSError(f"cannot listen on {self.settings.listen}")
        self.server.start()
        self._register()
        self._serving(True)
        log.info("%s serving on port %d", self.settings.service, self.port)
        return self.port

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, deregister, let in-flight calls finish (at most `grace` seconds), flush spans."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._serving(False)
        self._deregister()
        self.server.stop(self.settings.shutdown_grace if grace is None else grace).wait()
        self._close()
        log.info("%s stopped", self.settings.service)

    def serve(self, *services: str) -> int:
        """`start()`, then block until SIGTERM or SIGINT (main thread), then `stop()`; returns 0."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start(*services)
            stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
        return 0


class AioServiceHost(_HostBase):
    """A grpc.aio server with everything around it; the asyncio counterpart of `ServiceHost`."""

    def __init__(self, settings: HostSettings, *, policy: ClientPolicy | None = None,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        super().__init__(settings, policy)
        self.server = grpc.aio.server(interceptors=aio_server_interceptors(tracing=settings.tracing,
                                                                           metrics=self.metrics),
                                      options=list(options))

    def control_plane_channel(self, idempotent: Sequence[str] = ()) -> grpc.aio.Channel:
        """A grpc.aio channel to the control plane's replicas through the client interceptors."""
        if not self.settings.control_plane:
            raise ValueError("control_plane_channel needs a control plane (HostSettings.control_plane)")
        assert self.connection is not None
        return self.connection.aio_channel(idempotent=idempotent, interceptors=self._client_interceptors())

    def channel_to(self, target: str) -> grpc.aio.Channel:
        """A grpc.aio channel to `target` (host:port, several comma-separated, or dns:///name:port; with
        `discovery="xds"`, a service name dialed as xds:///NAME), through the client interceptors under the
        live client policy."""
        credentials = self.connection.credentials if self.connection else None
        if self.settings.discovery == "xds":
            return endpoints.aio_dial(self._xds_target(target), credentials, interceptors=self._client_interceptors())
        return endpoints.aio_channel(target, interceptors=self._client_interceptors(), credentials=credentials)

    def _client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        return aio_client_interceptors(self.live_policy, tracing=self.settings.tracing, metrics=self.metrics)

    async def start(self, *services: str) -> int:
        self._add_health_and_reflection(self.server, services)
        self.port = self._add_port(self.server)
        if not self.port:
            raise OSError(f"cannot listen on {self.settings.listen}")
        await self.server.start()
        await asyncio.to_thread(self._register)
        self._serving(True)
        log.info("%s serving on port %d", self.settings.service, self.port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._serving(False)
        await asyncio.to_thread(self._deregister)
        await self.server.stop(self.settings.shutdown_grace if grace is None else grace)
        await asyncio.to_thread(self._close)
        log.info("%s stopped", self.settings.service)

    async def serve(self, *services: str) -> int:
        """`start()`, then wait for SIGTERM or SIGINT, then `stop()`; returns 0."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start(*services)
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()
        return 0
