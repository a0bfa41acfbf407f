"""The Connection: the control plane's replicas, the credentials to reach them, and a client policy."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from controlplane import endpoints
from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.call import ClientConcern, OutgoingCall
from controlplane.interceptors.channel import intercepted_channel
from controlplane.security.tls import ClientTLS

TOKEN_ENV = "CONTROLPLANE_TOKEN"
AUTHORIZATION = "authorization"


@dataclass(frozen=True)
class Connection:
    """How to reach the control plane. Channels are made on demand (each caller owns and closes its own).

    targets: "host:port", several comma-separated, or "dns:///name:port" (see `controlplane.endpoints`).
    tls: the CA to trust and, for mTLS, this process's certificate; None is plaintext.
    token: a bearer token sent in the `authorization` metadata of every call (the identity of a caller
        without a client certificate; see docs/security.md).
    policy: a ClientPolicy whose interceptors (deadlines, breakers, bulkheads) wrap every channel; None for none.
    """

    targets: str
    tls: ClientTLS | None = None
    token: str | None = field(default=None, repr=False)
    policy: Any = None

    def __post_init__(self) -> None:
        endpoints.parse(self.targets)  # a clear ValueError now rather than an odd one at the first call
        if self.tls is not None:
            self.tls.credentials()

    @property
    def addresses(self) -> list[str]:
        return endpoints.parse(self.targets)

    @property
    def credentials(self) -> grpc.ChannelCredentials | None:
        """The channel credentials of this connection (also used towards services' instances), or None."""
        return self.tls.credentials() if self.tls is not None else None

    def to(self, targets: str) -> Connection:
        """The same credentials and policy towards other replicas (one replica, say)."""
        return Connection(targets, self.tls, self.token, self.policy)

    def channel(self, *, idempotent: Iterable[str] = (), options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A sync channel to the replicas."""
        channel = endpoints.channel(self.targets, idempotent=idempotent, options=options,
                                    credentials=self.credentials)
        interceptors = self._sync_interceptors()
        return intercepted_channel(channel, *interceptors) if interceptors else channel

    def aio_channel(self, *, idempotent: Iterable[str] = (), options: Sequence[tuple[str, Any]] = (),
                    interceptors: Sequence[Any] = ()) -> grpc.aio.Channel:
        """A grpc.aio channel to the replicas; `interceptors` run inside this connection's own."""
        return endpoints.aio_channel(self.targets, idempotent=idempotent, options=options,
                                     credentials=self.credentials,
                                     interceptors=[*self._aio_interceptors(), *interceptors] or None)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: the bearer token, if any."""
        return ((AUTHORIZATION, f"Bearer {self.token}"),) if self.token else ()

    def _sync_interceptors(self) -> list[Any]:
        found: list[Any] = []
        if self.token:
            found.append(ClientInterceptor([_BearerToken(self.metadata())]))
        if self.policy is not None:
            from controlplane.interceptors import client_interceptors

            found += client_interceptors(self.policy, tracing=False)
        return found

    def _aio_interceptors(self) -> list[Any]:
        found: list[Any] = []
        if self.token:
            found += aio_client_chain([_BearerToken(self.metadata())])
        if self.policy is not None:
            from controlplane.interceptors import aio_client_interceptors

            found += aio_client_interceptors(self.policy, tracing=False)
        return found


def connect(targets: str | Sequence[str], *, credentials: ClientTLS | None = None, token: str | None = None,
            policy: Any = None) -> Connection:
    """A Connection to the control plane's replicas (see `Connection`)."""
    joined = targets if isinstance(targets, str) else ",".join(targets)
    return Connection(joined, credentials, token, policy)


def as_connection(control_plane: str | Connection, environ: Mapping[str, str] | None = None) -> Connection:
    """`control_plane` itself, or an address string connected with what the environment names."""
    if isinstance(control_plane, Connection):
        return control_plane
    env = os.environ if environ is None else environ
    return connect(control_plane, credentials=ClientTLS.from_env(env), token=env.get(TOKEN_ENV) or None)


# --- the bearer token on every call ---------------------------------------------------------------------------


class _BearerToken(ClientConcern):
    """Adds the connection's `authorization` metadata to every call, of every kind (the chain adapters' job)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def start(self, call: OutgoingCall) -> None:
        call.metadata.extend(self._metadata)
