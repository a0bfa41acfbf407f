"""Channels to the control plane: several replicas behind one channel, failing over within a second.

Every client of the control plane (SelfRegistration, DiscoveryChannel, ConfigClient, the CLI, the demo)
takes its address as one string: `host:port`, several separated by commas
(`127.0.0.1:50051,127.0.0.1:50052`), or a gRPC target such as `dns:///controlplane.internal:50051` whose
name resolves to every replica. The channel balances calls round robin over the replicas it can reach,
so a replica that dies stops receiving calls at once; calls that were in flight to it fail with
UNAVAILABLE and gRPC's own retry sends the idempotent ones (`IDEMPOTENT_METHODS`) to another replica.
Reconnection backs off from 100 ms to at most 1 s, so a replica that comes back is used again within
about a second. Nothing here is a retry loop of our own: it is gRPC's name resolution, round_robin and
service-config retries.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
import grpc.aio

from controlplane.interceptors.aio_channel import intercepted_aio_channel
from controlplane.interceptors.retries import RetryPolicy, RetryThrottling, service_config
from controlplane.text import tcp_port

__all__ = [
    "IDEMPOTENT_METHODS", "START_SAGA", "aio_channel", "aio_dial", "channel", "channel_options", "dial", "parse",
    "target",
]

# Methods that are safe to run twice: reads, watches, and writes keyed so that a repeat changes nothing
# (Register of the same address and port replaces the instance, RegisterDefinition of identical content
# returns the stored version, AbortSaga of a compensating saga returns it). StartSaga is idempotent only
# with a client-chosen saga id, so callers that always pass one add it (see `channel(..., idempotent=)`).
IDEMPOTENT_METHODS: tuple[str, ...] = (
    "controlplane.v1.RegistryService/Register",
    "controlplane.v1.RegistryService/Deregister",
    "controlplane.v1.RegistryService/Heartbeat",
    "controlplane.v1.RegistryService/Discover",
    "controlplane.v1.RegistryService/Watch",
    "controlplane.v1.RegistryService/ListServices",
    "controlplane.v1.ConfigService/GetConfig",
    "controlplane.v1.ConfigService/GetSchema",
    "controlplane.v1.ConfigService/ListVersions",
    "controlplane.v1.ConfigService/GetVersion",
    "controlplane.v1.ConfigService/WatchConfig",
    "controlplane.v1.ConfigService/EvaluateFlag",
    "controlplane.v1.SagaService/RegisterDefinition",
    "controlplane.v1.SagaService/GetDefinition",
    "controlplane.v1.SagaService/ListDefinitions",
    "controlplane.v1.SagaService/GetSaga",
    "controlplane.v1.SagaService/ListSagas",
    "controlplane.v1.SagaService/WatchSaga",
    "controlplane.v1.SagaService/AbortSaga",
)
START_SAGA = "controlplane.v1.SagaService/StartSaga"

RECONNECT_MIN_MS = 100
RECONNECT_MAX_MS = 1000


def parse(addresses: str | Sequence[str]) -> list[str]:
    """The addresses in `addresses` (a comma-separated string or a sequence), stripped, empties dropped."""
    parts = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    found = [part.strip() for part in parts if part.strip()]
    if not found:
        raise ValueError("no control-plane address given (expected host:port[,host:port...])")
    return found


def target(addresses: str | Sequence[str]) -> str:
    """The gRPC target for one or several control-plane addresses.

    A gRPC target with a scheme (`dns:///name:port`, `ipv4:...`) is used as it is. One `host:port` of a
    name becomes `dns:///host:port` (every address the name resolves to is used). Several addresses become
    one `ipv4:`/`ipv6:` list; names among them are resolved now, once.
    """
    found = parse(addresses)
    if len(found) == 1 and ("://" in found[0] or found[0].startswith(("ipv4:", "ipv6:", "unix:"))):
        return found[0]
    if len(found) == 1 and not _is_ip(_split(found[0])[0]):
        return f"dns:///{found[0]}"
    resolved = [ip_port for address in found for ip_port in _resolve(address)]
    v6 = [a for a in resolved if a.startswith("[")]
    v4 = [a for a in resolved if not a.startswith("[")]
    if v4 and v6:
        return "ipv4:" + ",".join(v4)  # gRPC's address lists cannot mix families: prefer IPv4
    return ("ipv6:" if v6 else "ipv4:") + ",".join(v6 or v4)


def channel_options(idempotent: Iterable[str] = (), extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """Channel options: round robin over the replicas, retries of idempotent methods, quick reconnects."""
    retries = RetryPolicy(idempotent_methods=(*IDEMPOTENT_METHODS, *idempotent), max_attempts=4,
                          initial_backoff=0.05, max_backoff=0.5, throttling=RetryThrottling(max_tokens=100))
    config = {"loadBalancingConfig": [{"round_robin": {}}], **service_config(retries)}
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_MIN_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_MIN_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
        *extra,
    ]


def channel(addresses: str | Sequence[str], *, idempotent: Iterable[str] = (),
            options: Sequence[tuple[str, Any]] = (), credentials: grpc.ChannelCredentials | None = None
            ) -> grpc.Channel:
    """A sync channel to the control plane's replicas (see the module docstring); TLS with `credentials`."""
    return dial(target(addresses), credentials, options=channel_options(idempotent, options))


def aio_channel(addresses: str | Sequence[str], *, idempotent: Iterable[str] = (),
                options: Sequence[tuple[str, Any]] = (), interceptors: Sequence[Any] | None = None,
                credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to the control plane's replicas (see the module docstring); TLS with `credentials`."""
    return aio_dial(target(addresses), credentials, options=channel_options(idempotent, options),
                    interceptors=interceptors)


def dial(target: str, credentials: grpc.ChannelCredentials | None = None, *,
         options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A sync channel to any gRPC target: over TLS with `credentials`, plaintext without."""
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options=options)
    return grpc.insecure_channel(target, options=options)


def aio_dial(target: str, credentials: grpc.ChannelCredentials | None = None, *,
             options: Sequence[tuple[str, Any]] = (), interceptors: Sequence[Any] | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to any gRPC target: over TLS with `credentials`, plaintext without; our client stack
    among `interceptors` runs unary calls without grpc.aio's interceptor layer (`intercepted_aio_channel`)."""
    return intercepted_aio_channel(target, interceptors or (), credentials=credentials, options=options)


def _split(address: str) -> tuple[str, str]:
    host, sep, port = address.rpartition(":")
    if not sep or tcp_port(port) is None:
        raise ValueError(f"control-plane address {address!r} is not host:port (port 1..65535)")
    return host.strip("[]"), port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(address: str) -> list[str]:
    host, port = _split(address)
    if _is_ip(host):
        hosts = [host]
    else:
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"control-plane address {address!r}: cannot resolve {host!r} ({exc})") from None
        hosts = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts]
