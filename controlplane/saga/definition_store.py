"""Where saga definitions are kept in Consul: every version, immutable, and a pointer to the latest.

Key layout under the prefix:

    definitions/<name>/latest        {"version": n}
    definitions/<name>/v/<n:06d>     the SagaDefinition in proto JSON

Registering writes version n+1 and moves `latest` in one transaction that CASes `latest`, so two
concurrent registrations never get the same version. A running saga names the version it started
with and keeps reading that one. Which version is the latest is followed with a Consul blocking query
(StartSaga asks for it every time); a registration on another replica shows up within milliseconds.
"""

from __future__ import annotations

import asyncio
import json

import consul.aio
from google.protobuf import json_format

from controlplane import paging
from controlplane.consul.client import consul_call
from controlplane.errors import ConflictError, NotFoundError
from controlplane.saga.definitions import Definition, compile_definition, same_content
from controlplane.saga.eventstore.txn import cas_op, run_txn
from controlplane.v1 import saga_pb2
from controlplane.watch import Backoff, BlockingQueryWatch

# Definitions one ListDefinitions page reads from Consul at a time.
LIST_READS = 16


class DefinitionStore:
    def __init__(self, client: consul.aio.Consul, prefix: str, blocking_client: consul.aio.Consul | None = None,
                 *, watch_wait: float = 30.0, backoff: Backoff | None = None) -> None:
        self._consul = client
        self._blocking = blocking_client
        self._base = f"{prefix}definitions/"
        self._compiled: dict[tuple[str, int], Definition] = {}  # versions never change: cache forever
        self._watch_wait = watch_wait
        self._backoff = backoff
        self._latest: BlockingQueryWatch[dict[str, int]] | None = None
        self._registered_here: dict[str, int] = {}  # versions this process registered, ahead of the watch

    def _latest_watch(self) -> BlockingQueryWatch[dict[str, int]] | None:
        """Name -> latest version of every definition, kept current by one blocking query."""
        if self._latest is None and self._blocking is not None:
            blocking, base = self._blocking, self._base

            async def fetch(index: int, wait: float) -> tuple[int, dict[str, int]]:
                new_index, entries = await consul_call(
                    blocking.kv.get(base, recurse=True, index=index or None, wait=f"{int(wait * 1000)}ms"),
                    what="watch definitions",
                )
                latest = {e["Key"].removeprefix(base).split("/")[0]: json.loads(e["Value"])["version"]
                          for e in entries or [] if e["Key"].endswith("/latest")}
                return int(new_index), latest

            self._latest = BlockingQueryWatch("saga definitions", fetch, wait=self._watch_wait,
                                              backoff=self._backoff or Backoff()).start()
        return self._latest

    async def stop(self) -> None:
        if self._latest is not None:
            await self._latest.stop()

    async def _latest_version(self, name: str) -> int:
        watch = self._latest_watch()
        if watch is not None:
            snapshot = watch.current
            if not snapshot.stale and snapshot.value is not None and name in snapshot.value:
                return max(snapshot.value[name], self._registered_here.get(name, 0))
        _, entry = await consul_call(self._consul.kv.get(self._latest_key(name)), what="definition")
        if not entry:
            raise NotFoundError(f"no saga definition named {name!r}")
        return int(json.loads(entry["Value"])["version"])

    def _latest_key(self, name: str) -> str:
        return f"{self._base}{name}/latest"

    def _version_key(self, name: str, version: int) -> str:
        return f"{self._base}{name}/v/{version:06d}"

    async def register(self, proto: saga_pb2.SagaDefinition) -> tuple[Definition, bool]:
        """Validate and store a new version; (definition, created). Content equal to the latest version
        is not stored again: that version is returned with created=False."""
        compile_definition(proto)  # ValidationError before anything is written
        for _ in range(10):
            _, entry = await consul_call(self._consul.kv.get(self._latest_key(proto.name)), what="definition")
            latest = json.loads(entry["Value"])["version"] if entry else 0
            if latest:
                current = await self.get(proto.name, latest)
                if same_content(current.proto, proto):
                    return current, False
            stored = saga_pb2.SagaDefinition()
            stored.CopyFrom(proto)
            stored.version = latest + 1
            answer = await run_txn(self._consul, [
                cas_op(self._latest_key(proto.name), {"version": stored.version}, int(entry["ModifyIndex"]) if entry
                       else 0),
                cas_op(self._version_key(proto.name, stored.version), json_format.MessageToDict(stored), 0),
            ])
            if answer.ok:
                compiled = compile_definition(stored)
                self._compiled[(stored.name, stored.version)] = compiled
                self._registered_here[stored.name] = stored.version
                return compiled, True
        raise ConflictError(f"definition {proto.name} kept changing; try again")

    async def get(self, name: str, version: int = 0) -> Definition:
        """A version of a definition (0: the latest); NotFoundError when there is none."""
        if version:
            found = self._compiled.get((name, version))
            if found is not None:
                return found
        else:
            version = await self._latest_version(name)
            if (name, version) in self._compiled:
                return self._compiled[(name, version)]
        _, entry = await consul_call(self._consul.kv.get(self._version_key(name, version)), what="definition")
        if not entry:
            raise NotFoundError(f"saga definition {name!r} has no version {version}")
        proto = json_format.Parse(entry["Value"], saga_pb2.SagaDefinition())
        compiled = compile_definition(proto)
        self._compiled[(name, version)] = compiled
        return compiled

    async def latest_names(self) -> list[str]:
        """The name of every definition, in order."""
        _, keys = await consul_call(self._consul.kv.get(self._base, keys=True), what="list definitions")
        return sorted({k.removeprefix(self._base).split("/")[0] for k in keys or [] if k.endswith("/latest")})

    async def latest(self, names: list[str]) -> list[saga_pb2.SagaDefinition]:
        """The latest version of each of `names` in order, read LIST_READS at a time, stopping once they are
        more than a page can carry (`paging.MAX_PAGE_BYTES`)."""
        found: list[saga_pb2.SagaDefinition] = []
        size = 0
        for start in range(0, len(names), LIST_READS):
            chunk = await asyncio.gather(*(self.get(name) for name in names[start : start + LIST_READS]))
            found += (definition.proto for definition in chunk)
            size += sum(definition.proto.ByteSize() for definition in chunk)
            if size > paging.MAX_PAGE_BYTES:
                break
        return found
