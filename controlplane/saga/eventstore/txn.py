"""Consul transactions (/v1/txn): building KV operations and running them, failures translated.

A transaction is all-or-nothing. When it is refused (HTTP 409) Consul lists every failed operation by
index, which is what lets a group commit fail only the appends whose operations failed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import consul
import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ConsulUnavailable

MAX_OPS = 64  # Consul's limit of operations per transaction
Op = dict[str, Any]
# Verbs whose operations add nothing to a successful transaction's results (every other one adds one).
_NO_RESULT = frozenset({"delete", "delete-tree", "delete-cas", "check-not-exists"})


def result_count(ops: Sequence[Op]) -> int:
    """How many results a successful transaction returns for `ops` (deletes return none)."""
    return sum(0 if op.get("KV", {}).get("Verb") in _NO_RESULT else 1 for op in ops)


def _kv(verb: str, key: str, **fields: Any) -> Op:
    return {"KV": {"Verb": verb, "Key": key, **fields}}


_compact = json.JSONEncoder(separators=(",", ":")).encode


def encode(value: Any) -> str:
    """JSON, base64-encoded, as transaction values are."""
    return base64.b64encode(_compact(value).encode()).decode()


def decode(value: str | bytes | None) -> Any:
    if value is None:
        return None
    raw = base64.b64decode(value) if isinstance(value, str) else value
    return json.loads(raw) if raw else None


def set_op(key: str, value: Any) -> Op:
    return _kv("set", key, Value=encode(value))


def cas_op(key: str, value: Any, index: int) -> Op:
    """Set `key` only if its ModifyIndex is `index` (0: only if it does not exist)."""
    return _kv("cas", key, Value=encode(value), Index=index)


def get_op(key: str) -> Op:
    """Read `key`; the transaction fails when it does not exist."""
    return _kv("get", key)


def delete_op(key: str) -> Op:
    return _kv("delete", key)


def delete_tree_op(prefix: str) -> Op:
    """Delete every key under `prefix`."""
    return _kv("delete-tree", prefix)


def lock_op(key: str, value: Any, session: str) -> Op:
    """Acquire `key` for `session` (fails when another session holds it)."""
    return _kv("lock", key, Value=encode(value), Session=session)


def check_index_op(key: str, index: int) -> Op:
    """Fail the transaction unless `key`'s ModifyIndex is `index`."""
    return _kv("check-index", key, Index=index)


def check_absent_op(key: str) -> Op:
    """Fail the transaction if `key` exists."""
    return _kv("check-not-exists", key)


@dataclass(frozen=True)
class TxnError:
    op_index: int
    what: str


@dataclass(frozen=True)
class TxnResult:
    """`ok` with one KV result per operation, or refused with the failed operations."""

    ok: bool
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[TxnError] = field(default_factory=list)


class TxnRejected(Exception):
    """Consul refused the request itself (e.g. malformed or too large), not an operation in it."""


_READ_VERBS = frozenset({"get", "get-tree", "check-index", "check-session", "check-not-exists"})


async def run_txn(client: consul.aio.Consul, ops: Sequence[Op]) -> TxnResult:
    """Run one transaction. Raises ConsulUnavailable when Consul cannot answer, TxnRejected on 4xx but 409."""

    def answer(response: Any) -> tuple[int, str]:
        return response.code, response.body

    writes = writes_anything(ops)
    code, body = await consul_call(client.http.put(answer, "/v1/txn", data=json.dumps(list(ops))),
                                   what=txn_label(writes), write=writes)
    return txn_result(code, body)


def writes_anything(ops: Sequence[Op]) -> bool:
    return any(op.get("KV", {}).get("Verb") not in _READ_VERBS for op in ops)


def txn_label(writes: bool) -> str:
    """How a transaction is named in errors and in the Consul request metrics."""
    return "write transaction" if writes else "read transaction"


def txn_result(code: int, body: str | bytes) -> TxnResult:
    """The outcome of a /v1/txn answer with HTTP status `code`; raises as `run_txn` describes."""
    if code == 200:
        parsed = json.loads(body)
        return TxnResult(True, results=[r.get("KV", {}) for r in parsed.get("Results") or []])
    if code == 409:
        parsed = json.loads(body)
        errors = [TxnError(int(e.get("OpIndex", -1)), str(e.get("What", ""))) for e in parsed.get("Errors") or []]
        denied = [e.what for e in errors if "permission denied" in e.what.lower()]
        if denied:  # an ACL refusal of an operation, not a compare-and-set that failed: retrying cannot help
            from controlplane.consul.client import access_denied

            raise access_denied("transaction", denied[0])
        return TxnResult(False, errors=errors)
    if code >= 500:
        raise ConsulUnavailable(f"Consul failed a transaction: {code} {_text(body)}")
    if code in (401, 403):
        from controlplane.consul.client import access_denied

        raise access_denied("transaction", _text(body))
    raise TxnRejected(f"Consul rejected a transaction: {code} {_text(body)}")


def _text(body: str | bytes) -> str:
    return (body.decode(errors="replace") if isinstance(body, bytes) else body).strip()
