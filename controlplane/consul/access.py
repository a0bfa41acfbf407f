"""How this process reaches Consul: the one place Consul clients are built (py-consul's asyncio client and the
saga store's transaction client), with the ACL token and HTTPS applied to both.

    access = ConsulAccess.from_settings("https://consul.internal:8501", token=..., ca_file="consul-ca.pem")
    kv = access.client(request_timeout=5.0)            # consul.aio.Consul
    txn = access.txn_client(timeout=5.0)               # TxnClient: PUT /v1/txn on keep-alive connections
    other = access.at("10.0.0.8:8501")                 # another agent, same token and TLS

The token goes in every request's X-Consul-Token header (CONSUL_HTTP_TOKEN, `serve --consul-token`); HTTPS
is chosen by an https:// address (or CONSUL_HTTP_SSL=true) and verified against `ca_file` (CONSUL_CACERT), or
the system's roots without one. policies/consul-acl.hcl is the ACL policy the control plane needs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from typing import Any

import consul.aio

from controlplane.text import tcp_port


def split_address(http_addr: str) -> tuple[str, int]:
    """'host:port' (optionally with an http:// or https:// prefix) -> (host, port)."""
    addr = http_addr.removeprefix("http://").removeprefix("https://").rstrip("/")
    host, _, port = addr.rpartition(":")
    number = tcp_port(port)
    if not host or number is None:
        raise ValueError(f"Consul address must be host:port (port 1..65535), got {http_addr[:100]!r}")
    return host.strip("[]"), number


@dataclass(frozen=True)
class ConsulAccess:
    """Where Consul's HTTP API is and how to speak to it."""

    address: str  # host:port
    https: bool = False
    token: str = field(default="", repr=False)
    ca_file: str = ""

    def __post_init__(self) -> None:
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in self.token):  # it goes into an HTTP header as is
            raise ValueError("the Consul token must be printable ASCII without spaces")

    @classmethod
    def from_settings(cls, address: str, *, token: str = "", https: bool | None = None, ca_file: str = ""
                      ) -> ConsulAccess:
        """An address with or without a scheme; https None: as the scheme says (http without one)."""
        host, port = split_address(address)
        secure = address.startswith("https://") if https is None else https
        return cls(f"{host}:{port}", secure, token, ca_file)

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def at(self, address: str) -> ConsulAccess:
        """Another agent, reached with the same token and TLS."""
        host, port = split_address(address)
        return replace(self, address=f"{host}:{port}")

    def client(self, *, request_timeout: float, connections: int = 100) -> consul.aio.Consul:
        """py-consul's asyncio client: every request gives up after `request_timeout` seconds, at most
        `connections` open at once. Blocking queries need one whose timeout exceeds their wait."""
        host, port = split_address(self.address)
        verify: bool | str = (self.ca_file or True) if self.https else False  # False: no TLS context for http
        client = _TokenedConsul(host=host, port=port, scheme=self.scheme, token=self.token or None,
                                verify=verify, connections_timeout=request_timeout, connections_limit=connections)
        client.http.token = self.token
        return client

    def txn_client(self, *, timeout: float) -> object:
        """The saga event store's transaction client (see `controlplane.saga.eventstore.txn_client`)."""
        from controlplane.saga.eventstore.txn_client import TxnClient

        host, port = split_address(self.address)
        return TxnClient(host, port, timeout=timeout, token=self.token, ssl_context=self.ssl_context())

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.https:
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)


class _TokenedHTTP(consul.aio.HTTPClient):
    """py-consul's HTTP client with the ACL token on every request: some of its calls (agent.self) and every
    raw `http.put` leave the header out, and default deny then refuses them."""

    token = ""

    async def _request(self, callback: Any, method: str, uri: str, headers: dict[str, str] | None, data: Any = None,
                       connections_timeout: Any = None, raw: bool = False) -> Any:
        if self.token and not (headers and "X-Consul-Token" in headers):
            headers = {**(headers or {}), "X-Consul-Token": self.token}
        return await super()._request(callback, method, uri, headers, data=data,
                                      connections_timeout=connections_timeout, raw=raw)


class _TokenedConsul(consul.aio.Consul):
    def http_connect(self, host: str, port: int, scheme: Any, verify: bool | str = True, cert: Any = None) -> Any:
        return _TokenedHTTP(host, port, scheme, loop=self.loop, connections_limit=self.connections_limit,
                            connections_timeout=self.connections_timeout, verify=verify, cert=cert)
