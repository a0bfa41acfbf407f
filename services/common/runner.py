"""Run one demo service on the library's service host (`controlplane.service.ServiceHost`).

The host does what any service needs (interceptors, health, reflection, registration, config, graceful
stop on SIGTERM/SIGINT with deregistration and span flushing); this module adds only what the demo
services share: their command line, and a `Runtime` their servicers use.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from controlplane.config.client import ConfigClient
from controlplane.flags import seconds
from controlplane.interceptors import LivePolicy, TraceContextFilter, setup_tracing
from controlplane.security.tls import ENV_CERT, ENV_CLIENT_CA, ENV_KEY, ServerTLS
from controlplane.service import HostSettings, ServiceHost
from services.common.faults import FaultInjector, Faults

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What a service's servicers may need from the process: its host's channels and config, and cleanup."""

    host: ServiceHost
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def service(self) -> str:
        return self.host.settings.service

    @property
    def config(self) -> ConfigClient:
        """This service's live settings from the ConfigService (service name, environment)."""
        config: ConfigClient = self.host.config
        return config

    @property
    def client_policy(self) -> LivePolicy:
        """The client policy of this service's channels, following `client_policy` in its config document."""
        return self.host.live_policy

    def fault_injector(self) -> FaultInjector:
        """Faults that follow this service's config (`faults.failure_rate`, `faults.latency_ms`) live."""
        injector = FaultInjector(Faults.from_config(self.config.config))
        self.config.on_change(lambda snapshot: injector.update(Faults.from_config(snapshot.content)))
        return injector

    def channel_to(self, service: str) -> grpc.Channel:
        """A channel to every passing instance of `service` under the live client policy."""
        return self.host.channel_to(service)

    def control_plane_channel(self, idempotent: Sequence[str] = ()) -> grpc.Channel:
        """A channel to the control plane's replicas; `idempotent` names methods, beyond
        `endpoints.IDEMPOTENT_METHODS`, that this service's calls make safe to retry."""
        return self.host.control_plane_channel(idempotent)

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

    @property
    def metrics_port(self) -> int:
        """The default Prometheus port: 9471 user, 9472 order, 9473 payment, 9474 inventory (the control
        plane: 9464)."""
        return 9410 + self.default_port - 50000


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
    parser.add_argument(
        "--shutdown-grace", type=seconds(0, 3600), default=5.0, help="seconds in-flight calls get on SIGTERM"
    )
    parser.add_argument(
        "--metrics-listen",
        default=env.get("SERVICE_METRICS_LISTEN", f"127.0.0.1:{spec.metrics_port}"),
        help="host:port of the Prometheus metrics endpoint, '' for none [env SERVICE_METRICS_LISTEN, "
             "default %(default)s]",
    )
    parser.add_argument(
        "--discovery",
        choices=("library", "xds"),
        default=env.get("DEMO_DISCOVERY", "library"),
        help="how calls to other services find instances: the library's DiscoveryChannel, or gRPC's own xDS "
             "client (xds:///SERVICE) following traffic policies [env DEMO_DISCOVERY, default %(default)s]",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {spec.name} trace=%(trace_id)s: %(message)s"
    )
    logging.getLogger().handlers[0].addFilter(TraceContextFilter())
    setup_tracing(spec.name)
    # TLS from the environment (make up TLS=1): serve with this service's certificate, require client ones
    # signed by the CA; Consul cannot present one to a gRPC health check, so instances heartbeat a TTL instead.
    tls = ServerTLS.from_settings(env.get(ENV_CERT), env.get(ENV_KEY), env.get(ENV_CLIENT_CA))
    host = ServiceHost(HostSettings(service=spec.name, listen=args.listen, control_plane=args.control_plane,
                                    tls=tls, check="ttl" if tls else "grpc",
                                    version=spec.version, environment=args.environment,
                                    shutdown_grace=args.shutdown_grace, metrics_listen=args.metrics_listen or None,
                                    discovery=args.discovery))
    runtime = Runtime(host)
    spec.add_to_server(host.server, runtime)
    try:
        return host.serve(*spec.grpc_services)
    except grpc.RpcError as exc:
        log.error("could not register with the control plane at %s: %s", args.control_plane, exc.details())
        return 1
    except OSError as exc:
        log.error("%s", exc)
        return 1
    finally:
        runtime.close()
