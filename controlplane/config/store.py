"""Where configuration lives in Consul KV, and the transactions that change it.

Key layout (all values are UTF-8 JSON; times are RFC 3339 UTC):

    controlplane/config/services/<service>/version          {"version": N}: the newest version number taken
    controlplane/config/services/<service>/schema           {"schema": {...}, "version": n, "author", "updated_at"}
    controlplane/config/services/<service>/layers/_default  the default layer:
                                                            {"environment": "", "content": {...}, "version": N,
                                                             "author", "updated_at", "message"}
    controlplane/config/services/<service>/layers/<env>     one environment's layer, same shape
    controlplane/config/history/<service>/<version, 20 digits, zero-padded>
                                                            one write: {"version", "environment", "content",
                                                             "author", "created_at", "message",
                                                             "change_summary", "rolled_back_from"}

Everything needed to serve and to write a service sits under `services/<service>/`, so one recursive read
is a consistent snapshot, and one blocking query on that prefix wakes on every change that matters but not
on history, which keeps a service's latest `history` versions (each write removes the one that many
before it). `_default` cannot clash with an environment: environment names start with a lowercase letter.

Every write is one Consul transaction (/v1/txn) of compare-and-set operations against the ModifyIndexes
read with the snapshot: a layer write sets the version counter, the layer and its new history entry
together, and checks that the schema did not change; a schema write sets the schema and checks that no
layer was written meanwhile. Either every key changes or none does, and a concurrent writer makes the
transaction fail as a whole (`StaleState`) instead of overwriting.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import consul
import consul.aio

from controlplane.config.model import DEFAULT_LAYER, Layer, SchemaRecord, ServiceState, VersionEntry
from controlplane.consul.client import consul_call
from controlplane.errors import ConsulUnavailable, PreconditionError, ValidationError
from controlplane.text import decimal

PREFIX = "controlplane/config/"
DEFAULT_LAYER_KEY = "_default"
# Consul's default limit on a transaction's request body (txn_max_req_len), in bytes.
CONSUL_TXN_MAX_BYTES = 512 * 1024

T = TypeVar("T")
log = logging.getLogger(__name__)


class StaleState(Exception):
    """A transaction's compare-and-set lost to a concurrent write: nothing was written."""


def service_prefix(service: str) -> str:
    return f"{PREFIX}services/{service}/"


def layer_key(service: str, environment: str) -> str:
    return f"{service_prefix(service)}layers/{environment or DEFAULT_LAYER_KEY}"


def schema_key(service: str) -> str:
    return f"{service_prefix(service)}schema"


def version_key(service: str) -> str:
    return f"{service_prefix(service)}version"


def history_prefix(service: str) -> str:
    return f"{PREFIX}history/{service}/"


def history_key(service: str, version: int) -> str:
    return f"{history_prefix(service)}{version:020d}"


class ConfigStore:
    """Reads and writes services' configuration in Consul KV.

    `client` serves short requests; `blocking_client` must allow requests longer than a blocking wait.
    """

    def __init__(
        self,
        client: consul.aio.Consul,
        blocking_client: consul.aio.Consul,
        *,
        max_txn_bytes: int = CONSUL_TXN_MAX_BYTES,
        history: int = 1000,
    ) -> None:
        self._consul = client
        self._blocking = blocking_client
        self._max_txn_bytes = max_txn_bytes
        self.history = history

    async def load(self, service: str, index: int = 0, wait: float = 0.0) -> tuple[int, ServiceState]:
        """A consistent snapshot of `service`; with `index`, blocks up to `wait` seconds for a change past it."""
        client = self._blocking if index else self._consul
        new_index, items = await _call(
            client.kv.get(service_prefix(service), recurse=True, index=index or None, wait=f"{int(wait * 1000)}ms"),
            what=f"config of {service}",
        )
        return int(new_index), _state_from(service, items or [])

    async def commit_layer(self, state: ServiceState, layer: Layer, entry: VersionEntry) -> None:
        """Write `layer` and its history `entry` atomically, if nothing changed since `state` was read."""
        service = state.service
        current = state.layers.get(layer.environment)
        ops = [
            _schema_unchanged(state),
            _cas(version_key(service), {"version": layer.version}, state.head_index),
            _cas(layer_key(service, layer.environment), _layer_record(layer), current.modify_index if current else 0),
            _cas(history_key(service, entry.version), _entry_record(entry), 0),
        ]
        if entry.version > self.history:  # the history keeps the latest `history` versions
            ops.append(_delete(history_key(service, entry.version - self.history)))
        await self._transact(ops, what=f"write config of {service}", field="content")

    async def commit_schema(self, state: ServiceState, record: SchemaRecord) -> None:
        """Write the schema, if neither it nor any layer changed since `state` was read."""
        service = state.service
        version = version_key(service)
        ops = [
            _check_index(version, state.head_index),
            _cas(schema_key(service), _schema_record(record), state.schema.modify_index if state.schema else 0),
        ]
        await self._transact(ops, what=f"write schema of {service}", field="schema")

    async def history_versions(self, service: str) -> list[int]:
        """Every version in `service`'s history, oldest first."""
        _, keys = await _call(self._consul.kv.get(history_prefix(service), keys=True), what=f"history of {service}")
        versions = []
        for key in keys or []:
            tail = key.rpartition("/")[2]
            if (version := decimal(tail, 20)) is not None:  # history_key pads to 20 digits
                versions.append(version)
        return sorted(versions)

    async def history_entry(self, service: str, version: int) -> VersionEntry | None:
        _, item = await _call(
            self._consul.kv.get(history_key(service, version)), what=f"version {version} of {service}"
        )
        return None if item is None else _entry_from(_decode(item))

    async def _transact(self, ops: list[dict[str, Any]], *, what: str, field: str) -> None:
        """Run one transaction; `field` is the request field blamed when it is too large for Consul."""
        body = json.dumps(ops)
        if len(body) > self._max_txn_bytes:
            raise ValidationError.single(
                field,
                f"the write would be a {len(body)}-byte Consul transaction; Consul accepts at most "
                f"{self._max_txn_bytes} bytes: make it smaller",
            )
        await _call(self._consul.txn.put(ops), what=what, field=field, write=True)


async def _call(operation: Awaitable[T], *, what: str, field: str = "content", write: bool = False) -> T:
    """A Consul request with every failure made a domain error (or StaleState for a lost compare-and-set)."""
    try:
        return await consul_call(operation, what=what, write=write)
    except consul.ConsulException as exc:
        status, _, reason = str(exc).partition(" ")
        if status == "409":
            raise StaleState(what) from exc
        if status == "413":
            sizes = re.search(r"\((\d+) bytes\) too large, max size: (\d+)", reason)
            detail = f" ({sizes[1]} bytes; Consul accepts at most {sizes[2]})" if sizes else ""
            raise ValidationError.single(field, f"too large for Consul{detail}: make it smaller") from exc
        log.warning("Consul refused %s: %s", what, type(exc).__name__)
        raise ConsulUnavailable(f"Consul refused the request ({what}): {type(exc).__name__}") from exc


def _value(record: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(record, ensure_ascii=False).encode()).decode()


def _cas(key: str, record: dict[str, Any], index: int) -> dict[str, Any]:
    # Index 0 means "only if the key does not exist yet".
    return {"KV": {"Verb": "cas", "Key": key, "Value": _value(record), "Index": index}}


def _delete(key: str) -> dict[str, Any]:
    return {"KV": {"Verb": "delete", "Key": key}}


def _check_index(key: str, index: int) -> dict[str, Any]:
    if index == 0:
        return {"KV": {"Verb": "check-not-exists", "Key": key}}
    return {"KV": {"Verb": "check-index", "Key": key, "Index": index}}


def _schema_unchanged(state: ServiceState) -> dict[str, Any]:
    return _check_index(schema_key(state.service), state.schema.modify_index if state.schema else 0)


def _time(unix: float | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat(timespec="microseconds")


def _unix(text: str | None) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def _layer_record(layer: Layer) -> dict[str, Any]:
    return {
        "environment": layer.environment,
        "content": layer.content,
        "version": layer.version,
        "author": layer.author,
        "updated_at": _time(layer.updated_at),
        "message": layer.message,
    }


def _schema_record(record: SchemaRecord) -> dict[str, Any]:
    return {
        "schema": record.schema,
        "version": record.version,
        "author": record.author,
        "updated_at": _time(record.updated_at),
    }


def _entry_record(entry: VersionEntry) -> dict[str, Any]:
    return {
        "version": entry.version,
        "environment": entry.environment,
        "content": entry.content,
        "author": entry.author,
        "created_at": _time(entry.created_at),
        "message": entry.message,
        "change_summary": entry.change_summary,
        "rolled_back_from": entry.rolled_back_from,
    }


def _decode(item: dict[str, Any]) -> dict[str, Any]:
    try:
        record = json.loads(item.get("Value") or b"null")
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except ValueError as exc:
        raise PreconditionError(
            f"Consul key {item.get('Key')!r} does not hold a config record ({exc}): fix or delete it"
        ) from None


def _entry_from(record: dict[str, Any]) -> VersionEntry:
    return VersionEntry(
        version=int(record["version"]),
        environment=record.get("environment", ""),
        content=record.get("content") or {},
        author=record.get("author", ""),
        created_at=_unix(record.get("created_at")),
        message=record.get("message", ""),
        change_summary=record.get("change_summary", ""),
        rolled_back_from=int(record.get("rolled_back_from") or 0),
    )


def _state_from(service: str, items: Iterable[dict[str, Any]]) -> ServiceState:
    prefix = service_prefix(service)
    layers: dict[str, Layer] = {}
    schema: SchemaRecord | None = None
    head = head_index = 0
    for item in items:
        name = item["Key"].removeprefix(prefix)
        modify_index = int(item["ModifyIndex"])
        if name == "version":
            head, head_index = int(_decode(item).get("version", 0)), modify_index
        elif name == "schema":
            record = _decode(item)
            schema = SchemaRecord(
                schema=record.get("schema") or {},
                version=int(record.get("version", 0)),
                author=record.get("author", ""),
                updated_at=_unix(record.get("updated_at")),
                modify_index=modify_index,
            )
        elif name.startswith("layers/"):
            key = name.removeprefix("layers/")
            environment = DEFAULT_LAYER if key == DEFAULT_LAYER_KEY else key
            record = _decode(item)
            layers[environment] = Layer(
                environment=environment,
                content=record.get("content") or {},
                version=int(record.get("version", 0)),
                author=record.get("author", ""),
                updated_at=_unix(record.get("updated_at")),
                message=record.get("message", ""),
                modify_index=modify_index,
            )
    return ServiceState(service, layers, schema, head, head_index)
