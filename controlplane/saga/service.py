"""Wires the saga context together for the control-plane process: stores, leases, orchestrator, servicer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import consul.aio
import grpc
import yaml

from controlplane.consul.access import ConsulAccess
from controlplane.errors import ConsulUnavailable, DomainError
from controlplane.interceptors import ClientPolicy
from controlplane.registry.cache import InstanceCache
from controlplane.saga.definition_store import DefinitionStore
from controlplane.saga.definitions import load_definitions_file
from controlplane.saga.eventstore import EventStore, GroupCommitter
from controlplane.saga.eventstore.txn_client import TxnClient
from controlplane.saga.invoker import Invoker, cache_resolver
from controlplane.saga.leases import Leases
from controlplane.saga.orchestrator import Orchestrator
from controlplane.saga.projections import SagasByStatus
from controlplane.saga.repository import SagaRepository, fold_slice
from controlplane.saga.retention import EndedSagas
from controlplane.saga.servicer import SagaServicer
from controlplane.saga.settings import SagaSettings
from controlplane.saga.view_upgrade import ViewUpgrade

log = logging.getLogger(__name__)
OWN_WATCHES = 4  # the replica's own blocking queries beside the sagas' (session list, definitions), with room


@dataclass
class SagaService:
    """The running saga context. Build it with `start()`, end it with `stop()`."""

    settings: SagaSettings
    servicer: SagaServicer
    orchestrator: Orchestrator
    store: EventStore
    committer: GroupCommitter
    invoker: Invoker
    definitions: DefinitionStore
    clients: list[consul.aio.Consul]
    txn_client: TxnClient
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        settings: SagaSettings,
        *,
        consul_addr: str | ConsulAccess,
        consul_timeout: float,
        cache: InstanceCache,
        replica_id: str,
        advertise: tuple[str, int] | None = None,
        participant_credentials: grpc.ChannelCredentials | None = None,
    ) -> SagaService:
        """`advertise`: where this replica serves gRPC, shown by its `controlplane-saga` liveness instance;
        `participant_credentials`: TLS towards participants (None: plaintext)."""
        access = consul_addr if isinstance(consul_addr, ConsulAccess) else ConsulAccess.from_settings(consul_addr)
        client = access.client(request_timeout=consul_timeout)
        # Every open WatchSaga of a saga driven elsewhere holds one long poll, within a bounded budget.
        blocking = access.client(request_timeout=settings.watch_wait + consul_timeout + 5.0,
                                 connections=settings.max_watches + OWN_WATCHES)
        prefix = settings.kv_prefix if settings.kv_prefix.endswith("/") else settings.kv_prefix + "/"
        txn_client: TxnClient = access.txn_client(timeout=consul_timeout)  # type: ignore[assignment]
        committer = GroupCommitter(
            txn_client.run,
            window=settings.group_commit_window,
            max_ops=settings.group_commit_max_ops,
            max_inflight=settings.group_commit_max_inflight,
        ).start()
        store = EventStore(client, blocking, committer, prefix, watch_wait=settings.watch_wait,
                           stream_watch_wait=settings.stream_watch_wait, max_watches=settings.max_watches,
                           backoff=settings.consul_backoff)
        projection = SagasByStatus(client, prefix)
        ended = EndedSagas(client, store, projection.key, retention=settings.retention,
                           interval=settings.sweep_interval, backoff=settings.consul_backoff)
        repository = SagaRepository(store, projection, settings.snapshot_every, ended)
        definitions = DefinitionStore(client, prefix, blocking, watch_wait=settings.watch_wait,
                                      backoff=settings.consul_backoff)
        leases = Leases(client, blocking, prefix, replica_id, session_ttl=settings.session_ttl,
                        liveness_ttl=settings.liveness_ttl, backoff=settings.consul_backoff,
                        watch_wait=settings.watch_wait, advertise=advertise)
        policy = ClientPolicy.from_json(settings.participant_policy) if settings.participant_policy else None
        invoker = Invoker(cache_resolver(cache), policy=policy, credentials=participant_credentials)
        orchestrator = Orchestrator(repository, definitions, invoker, leases, settings)
        await orchestrator.start()
        service = cls(settings, SagaServicer(orchestrator, repository, definitions, projection), orchestrator,
                      store, committer, invoker, definitions, [client, blocking], txn_client)
        service._tasks.append(asyncio.get_running_loop().create_task(ended.run(), name="saga-retention"))
        upgrade = ViewUpgrade(client, store, projection, ended, fold_slice, replica_id=replica_id,
                              backoff=settings.consul_backoff)
        service._tasks.append(asyncio.get_running_loop().create_task(upgrade.run(), name="saga-views-upgrade"))
        if settings.definitions_file:
            service._tasks.append(asyncio.get_running_loop().create_task(
                service._register_file(definitions, settings.definitions_file), name="saga-definitions-file"))
        log.info("saga orchestrator running as replica %s under %s", replica_id, prefix)
        return service

    async def _register_file(self, definitions: DefinitionStore, path: str) -> None:
        """Register the file's definitions, and again every `definitions_reassert` seconds: a definition
        Consul lost (its data wiped, a restore) comes back by itself. Identical content registers
        nothing new."""
        while True:
            await self._register_once(definitions, path)
            await asyncio.sleep(self.settings.definitions_reassert)

    async def _register_once(self, definitions: DefinitionStore, path: str) -> None:
        delay = self.settings.consul_backoff.initial
        try:
            pending = load_definitions_file(path)
        except (OSError, DomainError, ValueError, yaml.YAMLError) as exc:
            log.error("cannot read saga definitions from %s: %s", path, exc)
            return
        while pending:
            try:
                definition, created = await definitions.register(pending[0])
                if created:
                    log.info("definition %s v%d registered from %s", definition.name, definition.version, path)
                pending.pop(0)
            except ConsulUnavailable:
                await asyncio.sleep(delay)
                delay = self.settings.consul_backoff.next(delay)
            except DomainError as exc:
                log.error("definition #%s in %s is invalid: %s", pending[0].name, path, exc.message)
                pending.pop(0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.orchestrator.stop()
        await self.committer.stop()
        await self.store.stop()
        await self.definitions.stop()
        await self.invoker.close()
        await self.txn_client.close()
        for client in self.clients:
            await client.close()
