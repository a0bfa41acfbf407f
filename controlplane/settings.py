"""The control-plane process's settings: one typed object, from flags and environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from controlplane.config.settings import ConfigSettings
from controlplane.consul.access import ConsulAccess
from controlplane.flags import seconds, whole
from controlplane.registry.cache import CacheSettings
from controlplane.saga.settings import SagaSettings
from controlplane.security.tls import ClientTLS, ServerTLS
from controlplane.watch import Backoff


@dataclass(frozen=True)
class ServerSettings:
    """How `controlplane serve` runs. Durations are in seconds."""

    # host:port the gRPC server listens on (CONTROLPLANE_LISTEN).
    listen: str = "127.0.0.1:50051"
    # host:port of the Consul agent's HTTP API (CONSUL_HTTP_ADDR).
    consul_addr: str = "127.0.0.1:8500"
    # host:port at which other replicas reach that agent's HTTP API (CONTROLPLANE_CONSUL_ADVERTISE; default
    # consul_addr): instances registered through this replica live on its agent, and a replica on another
    # agent heartbeats or deregisters them there.
    consul_advertise: str = ""
    # Consul's ACL token (CONSUL_HTTP_TOKEN), sent with every request; HTTPS to Consul (an https:// address or
    # CONSUL_HTTP_SSL=true), verified against consul_ca (CONSUL_CACERT; default the system's roots).
    consul_token: str = field(default="", repr=False)
    consul_https: bool = False
    consul_ca: str = ""
    # Longest a single Consul request (not a blocking query) may take.
    consul_timeout: float = 5.0
    # How often Consul's reachability is checked for the gRPC health status and the watches' staleness...
    consul_probe_interval: float = 1.0
    # ...and how long the probe's consistent read may take before Consul counts as unable to serve.
    consul_probe_timeout: float = 1.0
    # Time in-flight calls get to finish after SIGTERM.
    shutdown_grace: float = 10.0
    # Calls (streams included: Watch, WatchConfig, WatchSaga, ADS) served at once (CONTROLPLANE_MAX_CONCURRENT_RPCS);
    # past it gRPC answers RESOURCE_EXHAUSTED at once instead of the process taking on work without bound.
    max_concurrent_rpcs: int = 10_000
    # Of those, streams of all methods together (CONTROLPLANE_MAX_STREAMS; 0: three quarters, so unary calls
    # always find room) and one caller's streams (CONTROLPLANE_MAX_STREAMS_PER_CALLER; 0: half of max_streams;
    # the caller is its identity, else its address): see controlplane/stream_budget.py.
    max_streams: int = 0
    max_streams_per_caller: int = 0
    # host:port of the Prometheus metrics endpoint (CONTROLPLANE_METRICS_LISTEN); "" serves none.
    metrics_listen: str = "127.0.0.1:9464"
    # TLS: this server's certificate and key (CONTROLPLANE_TLS_CERT/_KEY); with a client CA
    # (CONTROLPLANE_TLS_CLIENT_CA) clients must present a certificate it signed (mTLS). The same certificate
    # is presented on the control plane's own calls (saga steps to participants), which trust tls_ca
    # (CONTROLPLANE_TLS_CA; default the client CA). All empty: plaintext.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tls_ca: str = ""
    # The authorization policy file (CONTROLPLANE_AUTHZ_POLICY; docs/security.md); "" allows every call.
    authz_policy: str = ""
    cache: CacheSettings = field(default_factory=CacheSettings)
    config: ConfigSettings = field(default_factory=ConfigSettings)
    saga: SagaSettings = field(default_factory=SagaSettings)

    @classmethod
    def from_args(cls, argv: list[str] | None = None, env: dict[str, str] | None = None) -> ServerSettings:
        env = dict(os.environ) if env is None else env
        defaults = cls()
        parser = argparse.ArgumentParser(prog="controlplane serve", description="Run the control plane.")
        parser.add_argument("--listen", default=env.get("CONTROLPLANE_LISTEN", defaults.listen),
                            help="host:port to serve gRPC on [env CONTROLPLANE_LISTEN, default %(default)s]")
        parser.add_argument("--consul", default=_strip_scheme(env.get("CONSUL_HTTP_ADDR", defaults.consul_addr)),
                            help="Consul HTTP address host:port [env CONSUL_HTTP_ADDR, default %(default)s]")
        parser.add_argument("--consul-advertise",
                            default=_strip_scheme(env.get("CONTROLPLANE_CONSUL_ADVERTISE", defaults.consul_advertise)),
                            help="host:port at which other replicas reach this Consul agent's HTTP API "
                                 "[env CONTROLPLANE_CONSUL_ADVERTISE, default: --consul]")
        parser.add_argument("--consul-token", default=env.get("CONSUL_HTTP_TOKEN", ""),
                            help="Consul ACL token (policies/consul-acl.hcl) [env CONSUL_HTTP_TOKEN]")
        parser.add_argument("--consul-ca", default=env.get("CONSUL_CACERT", ""),
                            help="CA of Consul's HTTPS certificate [env CONSUL_CACERT]")
        parser.add_argument("--consul-timeout", type=seconds(0.01, 600),
                            default=env.get("CONTROLPLANE_CONSUL_TIMEOUT", defaults.consul_timeout),
                            help="seconds a Consul request may take [env CONTROLPLANE_CONSUL_TIMEOUT]")
        parser.add_argument("--consul-probe-interval", type=seconds(0.01, 3600),
                            default=env.get("CONTROLPLANE_CONSUL_PROBE_INTERVAL", defaults.consul_probe_interval),
                            help="seconds between Consul reachability probes [env CONTROLPLANE_CONSUL_PROBE_INTERVAL]")
        parser.add_argument("--consul-probe-timeout", type=seconds(0.01, 600),
                            default=env.get("CONTROLPLANE_CONSUL_PROBE_TIMEOUT", defaults.consul_probe_timeout),
                            help="seconds the probe's consistent read may take [env CONTROLPLANE_CONSUL_PROBE_TIMEOUT]")
        parser.add_argument("--blocking-wait", type=seconds(0.1, 600),
                            default=env.get("CONTROLPLANE_BLOCKING_WAIT", defaults.cache.blocking_wait),
                            help="seconds a Consul blocking query waits [env CONTROLPLANE_BLOCKING_WAIT]")
        parser.add_argument("--retry-max", type=seconds(0.001, 3600),
                            default=env.get("CONTROLPLANE_RETRY_MAX", defaults.cache.backoff.maximum),
                            help="longest pause, in seconds, between retries while Consul is down "
                                 "[env CONTROLPLANE_RETRY_MAX]")
        parser.add_argument("--shutdown-grace", type=seconds(0, 3600),
                            default=env.get("CONTROLPLANE_SHUTDOWN_GRACE", defaults.shutdown_grace),
                            help="seconds in-flight calls get after SIGTERM [env CONTROLPLANE_SHUTDOWN_GRACE]")
        parser.add_argument("--max-concurrent-rpcs", type=whole(1, 1_000_000),
                            default=env.get("CONTROLPLANE_MAX_CONCURRENT_RPCS", defaults.max_concurrent_rpcs),
                            help="calls and streams served at once; more are RESOURCE_EXHAUSTED "
                                 "[env CONTROLPLANE_MAX_CONCURRENT_RPCS, default %(default)s]")
        parser.add_argument("--max-streams", type=whole(0, 1_000_000),
                            default=env.get("CONTROLPLANE_MAX_STREAMS", defaults.max_streams),
                            help="streams of all methods open at once (0: three quarters of --max-concurrent-rpcs); "
                                 "more are RESOURCE_EXHAUSTED [env CONTROLPLANE_MAX_STREAMS]")
        parser.add_argument("--max-streams-per-caller", type=whole(0, 1_000_000),
                            default=env.get("CONTROLPLANE_MAX_STREAMS_PER_CALLER", defaults.max_streams_per_caller),
                            help="streams one caller (identity, else address) holds open at once (0: half of "
                                 "--max-streams) [env CONTROLPLANE_MAX_STREAMS_PER_CALLER]")
        parser.add_argument("--config-history", type=whole(1, 1_000_000),
                            default=env.get("CONTROLPLANE_CONFIG_HISTORY", defaults.config.history),
                            help="versions of a service's config history kept; each write removes the one this "
                                 "many before it [env CONTROLPLANE_CONFIG_HISTORY, default %(default)s]")
        parser.add_argument("--metrics-listen", default=env.get("CONTROLPLANE_METRICS_LISTEN", defaults.metrics_listen),
                            help="host:port of the Prometheus metrics endpoint, '' for none "
                                 "[env CONTROLPLANE_METRICS_LISTEN, default %(default)s]")
        for flag, name, what in (
            ("--tls-cert", "CONTROLPLANE_TLS_CERT", "this server's TLS certificate (PEM)"),
            ("--tls-key", "CONTROLPLANE_TLS_KEY", "its private key (PEM)"),
            ("--tls-client-ca", "CONTROLPLANE_TLS_CLIENT_CA", "the CA client certificates must chain to (mTLS)"),
            ("--tls-ca", "CONTROLPLANE_TLS_CA", "the CA of participants' certificates (default: --tls-client-ca)"),
            ("--authz-policy", "CONTROLPLANE_AUTHZ_POLICY", "the authorization policy file (none: every call "
                                                            "allowed)"),
        ):
            parser.add_argument(flag, default=env.get(name, ""), help=f"{what} [env {name}]")
        SagaSettings.add_arguments(parser, env)
        args = parser.parse_args(argv)
        return cls(
            listen=args.listen,
            consul_addr=_strip_scheme(args.consul),
            consul_token=args.consul_token,
            consul_https=args.consul.startswith("https://") or env.get("CONSUL_HTTP_SSL", "").lower() == "true",
            consul_ca=args.consul_ca,
            consul_advertise=_strip_scheme(args.consul_advertise) or _strip_scheme(args.consul),
            consul_timeout=args.consul_timeout,
            consul_probe_interval=args.consul_probe_interval,
            consul_probe_timeout=args.consul_probe_timeout,
            shutdown_grace=args.shutdown_grace,
            max_concurrent_rpcs=args.max_concurrent_rpcs,
            max_streams=args.max_streams,
            max_streams_per_caller=args.max_streams_per_caller,
            metrics_listen=args.metrics_listen,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            tls_ca=args.tls_ca,
            authz_policy=args.authz_policy,
            cache=CacheSettings(
                blocking_wait=args.blocking_wait,
                backoff=Backoff(initial=min(0.1, args.retry_max), maximum=args.retry_max),
            ),
            config=ConfigSettings(history=args.config_history),
            saga=SagaSettings.from_namespace(args),
        )


def server_tls(settings: ServerSettings) -> ServerTLS | None:
    """The server's TLS (None: plaintext); TLSConfigError when the files cannot be used."""
    return ServerTLS.from_settings(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def outbound_tls(settings: ServerSettings) -> ClientTLS | None:
    """What the control plane presents and trusts on its own calls: its certificate, and the CA of the
    participants' certificates (None: plaintext, when the server itself serves plaintext)."""
    if not settings.tls_cert:
        return None
    return ClientTLS(settings.tls_ca or settings.tls_client_ca or None, settings.tls_cert, settings.tls_key)


def consul_access(settings: ServerSettings) -> ConsulAccess:
    """How the control plane reaches its Consul agent (token, HTTPS): every Consul client is built from it."""
    return ConsulAccess(settings.consul_addr, settings.consul_https, settings.consul_token, settings.consul_ca)


def _strip_scheme(addr: str) -> str:
    return addr.removeprefix("http://").removeprefix("https://").rstrip("/")
