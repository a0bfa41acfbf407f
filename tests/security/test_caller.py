"""Who a caller is, for the shares one caller may hold (sagas, streams, config checks)."""

from __future__ import annotations

import contextvars

from controlplane.security.identity import CALLER, caller_of


class Context:
    def __init__(self, peer: str, auth: dict[str, list[bytes]] | None = None) -> None:
        self._peer, self._auth = peer, auth or {}

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def test_without_an_identity_the_caller_is_its_address_whatever_the_connection() -> None:
    callers = [caller_of(Context(peer)) for peer in (
        "ipv4:127.0.0.1:50001", "ipv4:127.0.0.1:50002", "ipv4:127.0.0.2:50001",
        "ipv6:[::1]:50001", "ipv6:[::1]:50002", "unix:/tmp/socket")]
    assert callers == ["ipv4:127.0.0.1", "ipv4:127.0.0.1", "ipv4:127.0.0.2", "ipv6:[::1]", "ipv6:[::1]",
                       "unix:/tmp/socket"]


def test_an_identity_names_the_caller_wherever_it_calls_from() -> None:
    certified = Context("ipv4:127.0.0.1:50001", {"peer_spiffe_id": [b"spiffe://controlplane/service/order"]})
    assert caller_of(certified) == "spiffe://controlplane/service/order"

    def authorized() -> str:  # the authorization interceptor's identity (a bearer token's) comes first
        CALLER.set("spiffe://controlplane/operator/ci")
        return caller_of(certified)

    assert contextvars.copy_context().run(authorized) == "spiffe://controlplane/operator/ci"
