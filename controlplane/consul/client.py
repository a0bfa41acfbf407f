"""Consul HTTP clients and the translation of Consul failures into domain errors."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
import consul
import consul.aio

from controlplane.errors import ConsulUnavailable

T = TypeVar("T")


def split_address(http_addr: str) -> tuple[str, int]:
    """'host:port' (optionally with an http:// prefix) -> (host, port)."""
    addr = http_addr.removeprefix("http://").rstrip("/")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Consul address must be host:port, got {http_addr!r}")
    return host, int(port)


def connect(http_addr: str, *, request_timeout: float) -> consul.aio.Consul:
    """An asyncio Consul client whose every request gives up after `request_timeout` seconds.

    Blocking queries need a client whose timeout exceeds their wait; make a separate one for them.
    """
    host, port = split_address(http_addr)
    return consul.aio.Consul(host=host, port=port, connections_timeout=request_timeout)


async def consul_call(operation: Awaitable[T], *, what: str) -> T:
    """Await a Consul request, turning transport failures and 5xx answers into ConsulUnavailable."""
    try:
        return await operation
    except (TimeoutError, aiohttp.ClientError, consul.Timeout, OSError) as exc:
        raise ConsulUnavailable(f"Consul is unreachable ({what}): {type(exc).__name__} {exc}".strip()) from exc
    except consul.ConsulException as exc:
        if type(exc) is consul.ConsulException:  # 5xx: Consul itself is unhealthy (e.g. no leader)
            raise ConsulUnavailable(f"Consul failed ({what}): {exc}") from exc
        raise
