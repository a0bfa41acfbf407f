"""Who is calling: the SPIFFE ID of the client certificate, or the identity a bearer token stands for.

A call over mTLS carries its identity in the certificate's URI SAN (`spiffe://controlplane/service/order`),
which gRPC has verified against the client CA. Without TLS, a caller sends `authorization: Bearer TOKEN`; the
policy file maps the SHA-256 of each token to an identity (tokens themselves are never stored). A call with
neither has no identity.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

# The identity the authorization interceptor established for the call being handled (None: none checked).
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("controlplane_caller", default=None)


def token_digest(token: str) -> str:
    """What the policy file stores for a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def certificate_identity(context: Any) -> str | None:
    """The SPIFFE ID of the verified client certificate, or None (plaintext, or a certificate without one)."""
    auth = context.auth_context() or {}
    for key in ("peer_spiffe_id", "peer_uri"):
        for value in auth.get(key, ()):
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.startswith("spiffe://"):
                return text
    return None


def token_identity(metadata: Any, tokens: Mapping[str, str]) -> str | None:
    """The identity `tokens` (digest -> identity) gives the call's bearer token, or None."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            digest = token_digest(value.removeprefix("Bearer ").strip())
            for known, identity in tokens.items():
                if hmac.compare_digest(known, digest):
                    return identity
    return None


def author(claimed: str, fallback: str) -> str:
    """The author recorded for a write: the caller's identity when one was established, else what the client
    claimed (deployments without authorization), else `fallback`."""
    return CALLER.get() or claimed or fallback


def caller_of(context: Any) -> str:
    """Who is calling, for the shares of what one caller may hold (sagas, streams): the authenticated
    identity (the policy's, else the client certificate's), else the peer's address without its port.
    Not the connection: what is held outlives it, and a client opening new connections is the same caller."""
    found = CALLER.get() or certificate_identity(context)
    if found:
        return found
    peer = context.peer() or ""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer
