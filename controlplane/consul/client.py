"""Consul HTTP clients and the translation of Consul failures into domain errors."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import consul
import consul.aio

from controlplane.consul.access import ConsulAccess
from controlplane.errors import (
    ConsulAccessDenied,
    ConsulUnavailable,
    DomainError,
    LimitExceeded,
    OutcomeUnknown,
    ValidationError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

ConsulObserver = Callable[[str, str, float], None]
"""Told of every Consul request: (what, outcome, seconds); outcome is ok, not_found, conflict, unavailable,
unknown (a write without an answer) or refused."""
_observer: ConsulObserver | None = None


def observe_requests(observer: ConsulObserver | None) -> None:
    """Report every Consul request of this process to `observer` (metrics); None stops."""
    global _observer
    _observer = observer


def connect(http_addr: str | ConsulAccess, *, request_timeout: float, connections: int = 100) -> consul.aio.Consul:
    """An asyncio Consul client (see `ConsulAccess.client`); an address string is plain HTTP without a token."""
    access = http_addr if isinstance(http_addr, ConsulAccess) else ConsulAccess.from_settings(http_addr)
    return access.client(request_timeout=request_timeout, connections=connections)


async def consul_call(operation: Awaitable[T], *, what: str, write: bool = False) -> T:
    """Await a Consul request, translating every failure into a domain error.

    Transport failures and 5xx answers are ConsulUnavailable; for a `write` that was sent but never
    answered (a timeout, a dropped connection) it is OutcomeUnknown instead, since Consul may have
    applied it (a connection refused is still ConsulUnavailable: nothing was sent). 404 (NotFound) and
    409 (a transaction
    that failed its compare-and-set) are left to the caller. Another 4xx answer means the control plane let
    through something Consul refuses (its checks should have caught it first): too large is
    RESOURCE_EXHAUSTED, anything else INVALID_ARGUMENT, both in our words with Consul's reason cut short.
    """
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await operation
    except (TimeoutError, aiohttp.ClientError, consul.Timeout, OSError) as exc:
        if write and not isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
            outcome = "unknown"
            raise OutcomeUnknown(f"Consul did not answer the write ({what}) in time: it may or may not have been "
                                 "applied; read the current state before retrying") from exc
        outcome = "unavailable"
        raise ConsulUnavailable(f"Consul is unreachable ({what}): {type(exc).__name__} {exc}".strip()) from exc
    except consul.NotFound:
        outcome = "not_found"
        raise
    except (consul.ACLPermissionDenied, consul.ACLDisabled) as exc:
        outcome = "refused"
        raise access_denied(what, str(exc)) from exc
    except consul.ConsulException as exc:
        if str(exc).startswith("409 "):  # a transaction's compare-and-set failed: the caller knows what it means
            if "permission denied" in str(exc).lower():  # ...unless an operation was refused by the ACLs
                outcome = "refused"
                raise access_denied(what, str(exc)[4:]) from exc
            outcome = "conflict"
            raise
        error = translate_refusal(str(exc), what)
        outcome = "unavailable" if isinstance(error, ConsulUnavailable) else "refused"
        raise error from exc
    except BaseException:
        outcome = "cancelled"
        raise
    finally:
        report_request(what, outcome, time.perf_counter() - started)


def report_request(what: str, outcome: str, seconds: float) -> None:
    """Tell the observer of a Consul request made without `consul_call` (the event store's lean /v1/txn client)."""
    if _observer is not None:
        _observer(what, outcome, seconds)


_STATUS = re.compile(r"\A(\d{3}) ")
_TOO_LARGE = (413, 431)


def access_denied(what: str, reason: str) -> ConsulAccessDenied:
    log.error("Consul refused the control plane's ACL token (%s): %s", what, reason)
    reason = " ".join(reason.split())[:160]
    return ConsulAccessDenied(f"Consul refused the control plane's ACL token ({what}): {reason}; give it a token "
                              "(CONSUL_HTTP_TOKEN) with the policy in policies/consul-acl.hcl")


def translate_refusal(answer: str, what: str) -> DomainError:
    """The domain error for a Consul answer `"<status> <body>"` that is not a success."""
    found = _STATUS.match(answer)
    status = int(found.group(1)) if found else 500
    reason = " ".join(answer[found.end():].split())[:160] if found else ""
    if status in (401, 403):
        return access_denied(what, reason)
    if status in _TOO_LARGE or "too large" in reason.lower():
        return LimitExceeded(f"the request is larger than Consul stores in one write ({what})")
    if 400 <= status < 500:
        log.warning("Consul refused %s: %s", what, reason)
        return ValidationError.single("request", f"Consul refused it ({what}): {reason or status}")
    return ConsulUnavailable(f"Consul failed ({what}): {status} {reason}".strip())
