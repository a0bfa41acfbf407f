"""controlplane.v1.ConfigService: checks and translates requests, then asks the writer, store and watches.

Reads (GetConfig, EvaluateFlag) go to Consul each time, so a caller reads its own acknowledged writes.
WatchConfig streams follow a shared blocking-query watch per service (see watches.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import consul.aio
import grpc

from controlplane.config import flags
from controlplane.config import validation as v
from controlplane.config.check_queue import CHECK_CALLER
from controlplane.config.document import checksum
from controlplane.config.model import Layer, MergedDocument, ServiceState, VersionEntry
from controlplane.config.secrets import EnvSecretProvider, SecretProvider, resolve
from controlplane.config.settings import ConfigSettings
from controlplane.config.store import ConfigStore
from controlplane.config.watches import ConfigWatches
from controlplane.config.wire import from_struct, timestamp, to_struct
from controlplane.config.writer import ConfigWriter
from controlplane.errors import FieldViolation, NotFoundError, ValidationError, maps_domain_errors
from controlplane.security import identity
from controlplane.text import decimal
from controlplane.v1 import config_pb2, config_pb2_grpc
from controlplane.watch import Backoff, BlockingQueryWatch, Reachability
from controlplane.watch.quota import StreamQuota

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
ANONYMOUS = "anonymous"
# Rendered watch messages kept at most (one per watched service and environment).
MAX_RENDERED = 1024


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    def __init__(
        self,
        store: ConfigStore,
        watches: ConfigWatches,
        settings: ConfigSettings,
        secrets: SecretProvider,
    ) -> None:
        self._store = store
        self._writer = ConfigWriter(store)
        self._watches = watches
        self._settings = settings
        self._secrets = secrets
        self._streams = StreamQuota("WatchConfig")
        # (service, environment) -> the snapshot last rendered, its document and message (see _rendered).
        self._messages: dict[tuple[str, str], tuple[ServiceState, MergedDocument, config_pb2.WatchConfigResponse]] = {}

    @classmethod
    def create(
        cls,
        client: consul.aio.Consul,
        blocking_client: consul.aio.Consul,
        settings: ConfigSettings,
        *,
        blocking_wait: float,
        backoff: Backoff,
        secrets: SecretProvider | None = None,
        reachability: Reachability | None = None,
    ) -> ConfigServicer:
        """The servicer with its store and watches. `blocking_wait` (seconds) must fit `blocking_client`'s timeout."""
        store = ConfigStore(client, blocking_client, max_txn_bytes=settings.consul_txn_max_bytes,
                            history=settings.history)
        watches = ConfigWatches(store, settings, blocking_wait=blocking_wait, backoff=backoff,
                                reachability=reachability)
        return cls(store, watches, settings, secrets or EnvSecretProvider(prefix=settings.secret_env_prefix))

    def add_to_server(self, server: grpc.aio.Server) -> None:
        config_pb2_grpc.add_ConfigServiceServicer_to_server(self, server)

    def document_for_stream(self, service: str) -> contextlib.AbstractContextManager[BlockingQueryWatch[ServiceState]]:
        """The watch of one service's configuration for an xDS view, held as a WatchConfig stream holds it."""
        return self._watches.for_stream(service)

    async def stop(self) -> None:
        """End every WatchConfig stream (they finish with OK; clients reconnect)."""
        await self._watches.stop()

    @maps_domain_errors
    async def GetConfig(
        self, request: config_pb2.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.GetConfigResponse:
        _check_names(request.service, request.environment)
        _, state = await self._store.load(request.service)
        document = state.merged(request.environment)
        if document is None:
            raise NotFoundError(f"{request.service} has no config yet (SetConfig with expected_version 0 creates it)")
        return config_pb2.GetConfigResponse(
            document=self._document(document, request.resolve_secrets), layer_versions=dict(document.layer_versions)
        )

    @maps_domain_errors
    async def SetConfig(
        self, request: config_pb2.SetConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.SetConfigResponse:
        _take_turns_as(context)
        content = from_struct(request.content)
        v.raise_if(
            v.check_service_name(request.service)
            + v.check_environment(request.environment)
            + v.check_text(request.author, "author", v.MAX_AUTHOR)
            + v.check_text(request.message, "message", v.MAX_MESSAGE, multiline=True)
            + v.check_content(content, max_bytes=self._settings.max_layer_bytes, default_layer=not request.environment)
        )
        layer = await self._writer.set_layer(
            request.service,
            request.environment,
            content,
            expected_version=request.expected_version,
            author=identity.author(request.author, ANONYMOUS),
            message=request.message,
        )
        return config_pb2.SetConfigResponse(document=_layer_document(request.service, layer))

    @maps_domain_errors
    async def GetSchema(
        self, request: config_pb2.GetSchemaRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.GetSchemaResponse:
        v.raise_if(v.check_service_name(request.service))
        _, state = await self._store.load(request.service)
        if state.schema is None:
            raise NotFoundError(f"{request.service} has no schema (SetSchema with expected_version 0 creates one)")
        return config_pb2.GetSchemaResponse(schema=to_struct(state.schema.schema), version=state.schema.version)

    @maps_domain_errors
    async def SetSchema(
        self, request: config_pb2.SetSchemaRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.SetSchemaResponse:
        _take_turns_as(context)
        schema = from_struct(request.schema)
        v.raise_if(
            v.check_service_name(request.service)
            + v.check_text(request.author, "author", v.MAX_AUTHOR)
            + v.check_shape(schema, max_bytes=self._settings.max_layer_bytes, field="schema")
        )
        record = await self._writer.set_schema(
            request.service, schema, expected_version=request.expected_version,
            author=identity.author(request.author, ANONYMOUS),
        )
        return config_pb2.SetSchemaResponse(version=record.version)

    @maps_domain_errors
    async def ListVersions(
        self, request: config_pb2.ListVersionsRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.ListVersionsResponse:
        _check_names(request.service, request.environment)
        below = decimal(request.page_token, 18) if request.page_token else None
        if request.page_token and below is None:
            raise ValidationError.single("page_token", "must be a next_page_token from an earlier answer")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        history = await self._store.history_versions(request.service)
        versions = [n for n in reversed(history) if below is None or n < below]
        page: list[VersionEntry] = []
        looked = 0
        while looked < len(versions) and len(page) < size:
            chunk = versions[looked : looked + size]
            entries = await asyncio.gather(*(self._store.history_entry(request.service, n) for n in chunk))
            for entry in entries:
                looked += 1
                if entry is not None and (not request.environment or entry.environment == request.environment):
                    page.append(entry)
                    if len(page) == size:
                        break
        more = len(page) == size and looked < len(versions)
        return config_pb2.ListVersionsResponse(
            versions=[_version_info(e) for e in page], next_page_token=str(page[-1].version) if more else ""
        )

    @maps_domain_errors
    async def GetVersion(
        self, request: config_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.GetVersionResponse:
        v.raise_if(v.check_service_name(request.service))
        entry = await self._store.history_entry(request.service, request.version)
        if entry is None:
            raise NotFoundError(f"{request.service} has no version {request.version}")
        document = config_pb2.ConfigDocument(
            service=request.service,
            environment=entry.environment,
            content=to_struct(entry.content),
            version=entry.version,
            checksum=entry.checksum,
            author=entry.author,
            updated_at=timestamp(entry.created_at),
            message=entry.message,
        )
        return config_pb2.GetVersionResponse(document=document, info=_version_info(entry))

    @maps_domain_errors
    async def Rollback(
        self, request: config_pb2.RollbackRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.RollbackResponse:
        _take_turns_as(context)
        v.raise_if(
            v.check_service_name(request.service)
            + v.check_environment(request.environment)
            + v.check_text(request.author, "author", v.MAX_AUTHOR)
            + v.check_text(request.message, "message", v.MAX_MESSAGE, multiline=True)
            + ([] if request.to_version else [FieldViolation("to_version", "required: the version to restore")])
        )
        layer = await self._writer.rollback(
            request.service,
            request.environment,
            request.to_version,
            expected_version=request.expected_version,
            author=identity.author(request.author, ANONYMOUS),
            message=request.message,
        )
        return config_pb2.RollbackResponse(document=_layer_document(request.service, layer))

    @maps_domain_errors
    async def WatchConfig(
        self, request: config_pb2.WatchConfigRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[config_pb2.WatchConfigResponse]:
        _check_names(request.service, request.environment)
        with self._streams.hold(context.peer()), self._watches.for_stream(request.service) as watch:
            async for response in self._watch(request, watch):
                yield response

    async def _watch(self, request: config_pb2.WatchConfigRequest, watch: BlockingQueryWatch[ServiceState]
                     ) -> AsyncIterator[config_pb2.WatchConfigResponse]:
        await watch.first_sync(self._settings.first_sync_timeout)
        sent: tuple[int, str] | None = None
        async for snapshot in watch.subscribe():
            if snapshot.value is None:
                continue
            document, shared = self._rendered(snapshot.value, request.environment)
            if (document.version, document.checksum) == sent:
                continue
            if request.resolve_secrets:  # resolved values stay in this stream's own message
                yield config_pb2.WatchConfigResponse(
                    document=self._document(document, True), layer_versions=dict(document.layer_versions)
                )
            else:
                yield shared
            sent = (document.version, document.checksum)

    @maps_domain_errors
    async def EvaluateFlag(
        self, request: config_pb2.EvaluateFlagRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.EvaluateFlagResponse:
        v.raise_if(
            v.check_service_name(request.service)
            + v.check_environment(request.environment)
            + v.check_flag_name(request.flag)
            + v.check_flag_subject(request.subject_key, request.attributes)
        )
        _, state = await self._store.load(request.service)
        document = state.document(request.environment)
        decision = flags.evaluate(document.content, request.flag, request.subject_key, dict(request.attributes))
        return config_pb2.EvaluateFlagResponse(
            enabled=decision.enabled, reason=decision.reason, version=document.version
        )

    def _rendered(self, state: ServiceState, environment: str) -> tuple[MergedDocument, config_pb2.WatchConfigResponse]:
        """The merged document and its (unresolved) message, built once per snapshot for all streams alike."""
        key = (state.service, environment)
        cached = self._messages.get(key)
        if cached is not None and cached[0] is state:
            return cached[1], cached[2]
        document = state.document(environment)
        message = config_pb2.WatchConfigResponse(
            document=self._document(document, False), layer_versions=dict(document.layer_versions)
        )
        if len(self._messages) >= MAX_RENDERED:
            self._messages.clear()
        self._messages[key] = (state, document, message)
        return document, message

    def _document(self, document: MergedDocument, resolve_secrets: bool) -> config_pb2.ConfigDocument:
        content: Mapping[str, Any] = resolve(document.content, self._secrets) if resolve_secrets else document.content
        wire = config_pb2.ConfigDocument(
            service=document.service,
            environment=document.environment,
            content=to_struct(content),
            version=document.version,
            # Always of the unresolved document: the same either way, and it gives nothing away about secrets.
            checksum=document.checksum,
            author=document.author,
            message=document.message,
        )
        if document.updated_at is not None:
            wire.updated_at.CopyFrom(timestamp(document.updated_at))
        return wire


def _take_turns_as(context: grpc.aio.ServicerContext) -> None:
    """Name this call's caller for the config check queue (its identity, else its address), so callers
    take turns there. Each call runs in a task of its own: the value is this call's alone."""
    CHECK_CALLER.set(identity.caller_of(context))


def _check_names(service: str, environment: str) -> None:
    v.raise_if(v.check_service_name(service) + v.check_environment(environment))


def _layer_document(service: str, layer: Layer) -> config_pb2.ConfigDocument:
    return config_pb2.ConfigDocument(
        service=service,
        environment=layer.environment,
        content=to_struct(layer.content),
        version=layer.version,
        checksum=checksum(layer.content),
        author=layer.author,
        updated_at=timestamp(layer.updated_at),
        message=layer.message,
    )


def _version_info(entry: VersionEntry) -> config_pb2.VersionInfo:
    return config_pb2.VersionInfo(
        version=entry.version,
        environment=entry.environment,
        author=entry.author,
        created_at=timestamp(entry.created_at),
        message=entry.message,
        change_summary=entry.change_summary,
        rolled_back_from=entry.rolled_back_from,
    )


