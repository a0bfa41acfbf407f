"""Run one demo service: a gRPC server with health and reflection, registered with the control plane.

On SIGTERM or SIGINT the instance reports NOT_SERVING, deregisters, lets in-flight calls finish and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane import endpoints
from controlplane.config.client import ConfigClient
from controlplane.discovery import DiscoveryChannel
from controlplane.interceptors import (
    LivePolicy,
    TraceContextFilter,
    channel_options,
    client_interceptors,
    server_interceptors,
    setup_tracing,
)
from controlplane.registry.client import SelfRegistration
from services.common.faults import FaultInjector, Faults

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What a service's servicers may need from the process: where the control plane is, and cleanup."""

    service: str
    control_plane: str
    environment: str = "dev"
    closers: list[Callable[[], None]] = field(default_factory=list)
    client_policy: LivePolicy = field(default_factory=LivePolicy)
    _config: ConfigClient | None = None
    _following_policy: bool = False

    @property
    def config(self) -> ConfigClient:
        """This service's live settings from the ConfigService (service name, environment)."""
        if self._config is None:
            self._config = ConfigClient(self.service, self.environment, self.control_plane).start(timeout=0)
            self.closers.append(self._config.stop)
        return self._config

    def fault_injector(self) -> FaultInjector:
        """Faults that follow this service's config (`faults.failure_rate`, `faults.latency_ms`) live."""
        injector = FaultInjector(Faults.from_config(self.config.config))
        self.config.on_change(lambda snapshot: injector.update(Faults.from_config(snapshot.content)))
        return injector

    def live_policy(self) -> LivePolicy:
        """The client policy of this service's channels, following `client_policy` in its config document
        (deadlines, breakers, bulkheads, retries, and operators' breaker overrides), live."""
        if not self._following_policy:
            self._following_policy = True
            self.closers.append(self.client_policy.follow(self.config))
        return self.client_policy

    def channel_to(self, service: str) -> grpc.Channel:
        """A channel to every passing instance of `service`, through the client interceptor stack
        (tracing, deadline budgets, circuit breaking) under the live client policy, closed with the process."""
        live = self.live_policy()
        discovered = DiscoveryChannel(service, self.control_plane, options=channel_options(live))
        self.closers.append(discovered.follow(live))
        self.closers.append(discovered.close)
        return grpc.intercept_channel(discovered, *client_interceptors(live))

    def control_plane_channel(self, idempotent: Sequence[str] = ()) -> grpc.Channel:
        """A channel to the control plane's replicas through the client interceptor stack; `idempotent`
        names methods, beyond `endpoints.IDEMPOTENT_METHODS`, that this service's calls make safe to retry."""
        channel = endpoints.channel(self.control_plane, idempotent=idempotent)
        self.closers.append(channel.close)
        return grpc.intercept_channel(channel, *client_interceptors(self.live_policy()))

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


@dataclass(frozen=True)
class ServiceSpec:
    """What a demo service serves: its registry name, its gRPC service names and how to add them."""

    name: str
    grpc_services: Sequence[str]
    add_to_server: Callable[[grpc.Server, Runtime], None]
    default_port: int
    version: str = "0.1.0"


def main(spec: ServiceSpec, argv: Sequence[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog=f"services.{spec.name}")
    parser.add_argument(
        "--listen",
        default=env.get("SERVICE_LISTEN", f"127.0.0.1:{spec.default_port}"),
        help="host:port to serve on [env SERVICE_LISTEN]",
    )
    parser.add_argument(
        "--control-plane",
        default=env.get("CONTROLPLANE_ADDR", "127.0.0.1:50051"),
        help="control plane address, or several comma-separated [env CONTROLPLANE_ADDR]",
    )
    parser.add_argument(
        "--environment",
        default=env.get("DEMO_ENVIRONMENT", "dev"),
        help="config environment to follow [env DEMO_ENVIRONMENT, default %(default)s]",
    )
    parser.add_argument("--shutdown-grace", type=float, default=5.0, help="seconds in-flight calls get on SIGTERM")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {spec.name} trace=%(trace_id)s: %(message)s"
    )

    logging.getLogger().handlers[0].addFilter(TraceContextFilter())
    setup_tracing(spec.name)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), interceptors=server_interceptors())
    runtime = Runtime(service=spec.name, control_plane=args.control_plane, environment=args.environment)
    spec.add_to_server(server, runtime)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((*spec.grpc_services, health_name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(args.listen)
    if not port:
        log.error("cannot listen on %s", args.listen)
        return 1
    server.start()
    for name in ("", *spec.grpc_services):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    host = args.listen.rpartition(":")[0] or "127.0.0.1"
    registration = SelfRegistration(
        control_plane=args.control_plane, service=spec.name, address=host, port=port, version=spec.version
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        registration.register()
    except grpc.RpcError as exc:
        log.error("could not register with the control plane at %s: %s", args.control_plane, exc.details())
        server.stop(0)
        runtime.close()
        return 1
    log.info("serving %s on %s:%d", spec.name, host, port)
    stop.wait()
    log.info("shutting down")
    health_servicer.enter_graceful_shutdown()
    registration.deregister()
    server.stop(args.shutdown_grace).wait()
    runtime.close()
    return 0
