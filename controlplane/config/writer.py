"""Versioned writes: SetConfig, SetSchema and Rollback as read, check, validate, commit.

Optimistic concurrency: a write names the version it expects the layer (or schema) to be at. If the
snapshot shows another version, the answer is ABORTED and nothing is written. If the snapshot matched
but the Consul transaction loses a compare-and-set (someone wrote in between), the whole attempt is
redone from a fresh snapshot: a concurrent write to the *same* layer then shows up as a version
mismatch (ABORTED), while one to another layer of the service only costs a retry. So of two writers
expecting the same version exactly one wins, and no acknowledged write is ever overwritten unseen.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any

from controlplane.config import flags
from controlplane.config import schema as schemas
from controlplane.config.check_queue import off_loop
from controlplane.config.diff import summarize
from controlplane.config.model import (
    Layer,
    SchemaRecord,
    ServiceState,
    VersionEntry,
    environment_label,
)
from controlplane.config.store import ConfigStore, StaleState
from controlplane.errors import ConflictError, FieldViolation, NotFoundError, ValidationError
from controlplane.xds import traffic

# Attempts of one write while other layers of the same service are being written concurrently.
MAX_ATTEMPTS = 20


class ConfigWriter:
    """The write side of the ConfigService. Requests arrive validated (names, content shape, sizes)."""

    def __init__(self, store: ConfigStore, *, max_attempts: int = MAX_ATTEMPTS) -> None:
        self._store = store
        self._max_attempts = max_attempts

    async def set_layer(
        self,
        service: str,
        environment: str,
        content: Mapping[str, Any],
        *,
        expected_version: int,
        author: str,
        message: str,
        rolled_back_from: int = 0,
    ) -> Layer:
        """Replace one layer if it is at `expected_version` (0: must not exist). The written layer."""
        for attempt in range(self._max_attempts):
            _, state = await self._store.load(service)
            current = state.layers.get(environment)
            _expect(
                "layer " + environment_label(environment), service, current.version if current else 0, expected_version
            )
            version = state.head + 1
            now = time.time()
            layer = Layer(environment, content, version, author, now, message)
            _raise_violations(await off_loop(_document_violations, state.with_layer(layer), environment,
                                             state.schema))
            entry = VersionEntry(
                version=version,
                environment=environment,
                content=content,
                author=author,
                created_at=now,
                message=message,
                change_summary=summarize(current.content if current else {}, content),
                rolled_back_from=rolled_back_from,
            )
            try:
                await self._store.commit_layer(state, layer, entry)
                return layer
            except StaleState:
                await _pause(attempt)
        raise ConflictError(f"{service}: too many concurrent writes, nothing was written; retry")

    async def rollback(
        self, service: str, environment: str, to_version: int, *, expected_version: int, author: str, message: str
    ) -> Layer:
        """Write a new version of a layer whose content is that of `to_version` (which stays in history)."""
        entry = await self._store.history_entry(service, to_version)
        if entry is None:
            raise NotFoundError(f"{service} has no version {to_version} (its history keeps the latest "
                                f"{self._store.history} versions)")
        if entry.environment != environment:
            raise ValidationError.single(
                "to_version",
                f"version {to_version} is a write to layer {environment_label(entry.environment)!r}, "
                f"not {environment_label(environment)!r}",
            )
        return await self.set_layer(
            service,
            environment,
            entry.content,
            expected_version=expected_version,
            author=author,
            message=message or f"rollback to version {to_version}",
            rolled_back_from=to_version,
        )

    async def set_schema(
        self, service: str, schema: Mapping[str, Any], *, expected_version: int, author: str
    ) -> SchemaRecord:
        """Replace the schema if it is at `expected_version` and every served document satisfies it."""
        _raise_violations(await off_loop(schemas.check_schema, schema))
        for attempt in range(self._max_attempts):
            _, state = await self._store.load(service)
            _expect("schema", service, state.schema.version if state.schema else 0, expected_version)
            problems = await off_loop(_served_violations, state, schema)
            if problems:
                raise ValidationError(
                    problems,
                    f"the current config of {service} does not satisfy the new schema: "
                    + "; ".join(f"{p.field}: {p.description}" for p in problems),
                )
            record = SchemaRecord(schema, expected_version + 1, author, time.time())
            try:
                await self._store.commit_schema(state, record)
                return record
            except StaleState:
                await _pause(attempt)
        raise ConflictError(f"{service}: too many concurrent writes, nothing was written; retry")


def _expect(what: str, service: str, current: int, expected: int) -> None:
    if current == expected:
        return
    if expected == 0:
        raise ConflictError(
            f"{what} of {service} already exists at version {current}; expected_version 0 "
            "only creates: re-read and retry with the current version"
        )
    if current == 0:
        raise ConflictError(f"{what} of {service} does not exist; expected_version must be 0 to create it")
    raise ConflictError(f"{what} of {service} is at version {current}, not the expected {expected}: re-read and retry")


def _document_violations(state: ServiceState, written: str, schema: SchemaRecord | None) -> list[FieldViolation]:
    """Problems of every served document the write changes: the written one as `content.*`, others by name."""
    problems: list[FieldViolation] = []
    for env, document in state.affected_by(written).items():
        found = flags.check_flags(document.content, root="") + traffic.check(document.content, root="")
        if schema is not None:
            found += schemas.violations(schema.schema, document.content, root="")
        if env == written:
            problems += [FieldViolation(_under("content", p.field), p.description) for p in found]
        else:
            problems += _prefixed(found, env)
    return problems


def _served_violations(state: ServiceState, schema: Mapping[str, Any]) -> list[FieldViolation]:
    """How each document the service serves now violates `schema`, by environment."""
    problems: list[FieldViolation] = []
    for env, document in state.served_documents().items():
        problems += _prefixed(schemas.violations(schema, document.content, root=""), env)
    return problems


def _prefixed(found: list[FieldViolation], environment: str) -> list[FieldViolation]:
    return [FieldViolation(_under(f"config[{environment_label(environment)}]", p.field), p.description) for p in found]


def _under(root: str, path: str) -> str:
    if path == "(document)":
        return root
    return f"{root}{path}" if path.startswith("[") else f"{root}.{path}"


def _raise_violations(problems: list[FieldViolation]) -> None:
    if problems:
        raise ValidationError(problems)


async def _pause(attempt: int) -> None:
    """A short random pause so colliding writers spread out (seconds)."""
    await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
