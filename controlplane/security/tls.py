"""TLS credentials from PEM files, for servers and for the channels that call them.

A server with a client CA requires and verifies client certificates (mTLS); without one it serves TLS to any
client. Environment variables name the files so every process of a deployment picks them up the same way:

    CONTROLPLANE_TLS_CA      the CA that signed the servers' certificates (a client trusts it)
    CONTROLPLANE_TLS_CERT    this process's certificate (chain), PEM
    CONTROLPLANE_TLS_KEY     its private key, PEM
    CONTROLPLANE_TLS_CLIENT_CA   (servers) the CA client certificates must chain to: mTLS

With none set, channels and servers are plaintext (the loopback default of `make up`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

ENV_CA = "CONTROLPLANE_TLS_CA"
ENV_CERT = "CONTROLPLANE_TLS_CERT"
ENV_KEY = "CONTROLPLANE_TLS_KEY"
ENV_CLIENT_CA = "CONTROLPLANE_TLS_CLIENT_CA"


class TLSConfigError(ValueError):
    """Certificate settings that cannot work (a file missing, a certificate without its key)."""


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"{what} {path!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate and key, and the CA its clients' certificates must chain to (mTLS), if any."""

    cert: str
    key: str
    client_ca: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        cert, key = _read(self.cert, "TLS certificate"), _read(self.key, "TLS key")
        client_ca = _read(self.client_ca, "TLS client CA")
        assert cert is not None and key is not None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)

    @classmethod
    def from_settings(cls, cert: str | None, key: str | None, client_ca: str | None) -> ServerTLS | None:
        """None when no certificate is given (plaintext); TLSConfigError when the settings cannot work."""
        if not cert and not key:
            if client_ca:
                raise TLSConfigError("a client CA needs the server's own certificate and key (--tls-cert/--tls-key)")
            return None
        if not (cert and key):
            raise TLSConfigError("TLS needs both a certificate and its key")
        tls = cls(cert, key, client_ca or None)
        tls.credentials()  # fail at start-up on unreadable files, not on the first handshake
        return tls


@dataclass(frozen=True)
class ClientTLS:
    """What a channel presents and trusts: the servers' CA and, for mTLS, its own certificate and key."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise TLSConfigError("a client certificate needs its key (and the key its certificate)")
        return grpc.ssl_channel_credentials(root_certificates=_read(self.ca, "TLS CA"),
                                            private_key=_read(self.key, "TLS key"),
                                            certificate_chain=_read(self.cert, "TLS certificate"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientTLS | None:
        """The client TLS the environment asks for; None (plaintext) when it names no CA."""
        env = os.environ if environ is None else environ
        if not env.get(ENV_CA):
            return None
        return cls(env.get(ENV_CA), env.get(ENV_CERT) or None, env.get(ENV_KEY) or None)
