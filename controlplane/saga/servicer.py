"""controlplane.v1.SagaService: translates and validates requests, then asks the orchestrator and stores."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf import struct_pb2

from controlplane import names, paging
from controlplane.errors import FieldViolation, NotFoundError, ValidationError, maps_domain_errors, raise_if
from controlplane.saga import convert
from controlplane.saga.definition_store import DefinitionStore
from controlplane.saga.orchestrator import Orchestrator, new_trace_id
from controlplane.saga.projections import SagasByStatus, status_from_proto
from controlplane.saga.repository import SagaRepository
from controlplane.saga.state import SagaState, apply
from controlplane.security import identity
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from controlplane.watch.quota import StreamQuota
from controlplane.wire_checks import struct_problems

TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
# The input is stored in the saga's first event, one Consul value in one transaction.
MAX_INPUT_BYTES = 64 * 1024
MAX_REASON = 1024


def check_saga_id(saga_id: str, field: str = "saga_id") -> None:
    if not saga_id:
        raise ValidationError.single(field, "required: the saga's id")
    raise_if(names.IDENTIFIER.check(saga_id, field))


def check_input(message: struct_pb2.Struct, field: str = "input") -> None:
    size = message.ByteSize()
    if size > MAX_INPUT_BYTES:
        raise ValidationError.single(field, f"is {size} bytes; at most {MAX_INPUT_BYTES} bytes are accepted")
    raise_if(struct_problems(message, field))


class SagaServicer(saga_pb2_grpc.SagaServiceServicer):
    def __init__(
        self,
        orchestrator: Orchestrator,
        repository: SagaRepository,
        definitions: DefinitionStore,
        projection: SagasByStatus,
    ) -> None:
        self._orchestrator = orchestrator
        self._repo = repository
        self._definitions = definitions
        self._projection = projection
        self._streams = StreamQuota("WatchSaga")

    @maps_domain_errors
    async def RegisterDefinition(
        self, request: saga_pb2.RegisterDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> saga_pb2.RegisterDefinitionResponse:
        if not request.HasField("definition"):
            raise ValidationError.single("definition", "required: the saga definition")
        definition, _ = await self._definitions.register(request.definition)
        return saga_pb2.RegisterDefinitionResponse(definition=definition.proto)

    @maps_domain_errors
    async def GetDefinition(
        self, request: saga_pb2.GetDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> saga_pb2.GetDefinitionResponse:
        raise_if(names.DEFINITION.check(request.name, "name"))
        definition = await self._definitions.get(request.name, request.version)
        return saga_pb2.GetDefinitionResponse(definition=definition.proto)

    @maps_domain_errors
    async def ListDefinitions(
        self, request: saga_pb2.ListDefinitionsRequest, context: grpc.aio.ServicerContext
    ) -> saga_pb2.ListDefinitionsResponse:
        after = request.page_token  # the last name of the page before
        raise_if(names.DEFINITION.check(after, "page_token", required=False))
        size = paging.page_size(request.page_size)
        wanted = [name for name in await self._definitions.latest_names() if name > after][: size + 1]
        response = saga_pb2.ListDefinitionsResponse()
        read = await self._definitions.latest(wanted)
        more = paging.fill(response.definitions, ((d.name, lambda d=d: d) for d in read), size=size)
        response.next_page_token = more or ""
        return response

    @maps_domain_errors
    async def StartSaga(
        self, request: saga_pb2.StartSagaRequest, context: grpc.aio.ServicerContext
    ) -> saga_pb2.StartSagaResponse:
        saga_id = request.saga_id or str(uuid.uuid4())
        check_saga_id(saga_id)
        raise_if(names.DEFINITION.check(request.definition_name, "definition_name"))
        check_input(request.input)
        definition = await self._definitions.get(request.definition_name, request.definition_version)
        saga_input = convert.from_struct(request.input)
        state, created = await self._orchestrator.start_saga(
            saga_id, definition, saga_input, request.definition_version, _trace_id(context), identity.caller_of(context)
        )
        saga = convert.saga_to_proto(state, request.input if created else None)
        return saga_pb2.StartSagaResponse(saga=saga, created=created)

    @maps_domain_errors
    async def GetSaga(self, request: saga_pb2.GetSagaRequest, context: grpc.aio.ServicerContext
                      ) -> saga_pb2.GetSagaResponse:
        return saga_pb2.GetSagaResponse(saga=convert.saga_to_proto(await self._load(request.saga_id)))

    @maps_domain_errors
    async def ListSagas(
        self, request: saga_pb2.ListSagasRequest, context: grpc.aio.ServicerContext
    ) -> saga_pb2.ListSagasResponse:
        raise_if(names.DEFINITION.check(request.definition_name, "definition_name", required=False)
                  + ([FieldViolation("page_size", f"must not be negative, got {request.page_size}")]
                     if request.page_size < 0 else [])
                  + ([FieldViolation("page_token", "not a token this service issued")]
                     if len(request.page_token) > 512 else []))
        summaries, token = await self._projection.list(
            status_from_proto(request.status), request.definition_name, request.page_size, request.page_token
        )
        return saga_pb2.ListSagasResponse(sagas=[convert.summary_to_proto(s) for s in summaries],
                                          next_page_token=token)

    @maps_domain_errors
    async def WatchSaga(
        self, request: saga_pb2.WatchSagaRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[saga_pb2.WatchSagaResponse]:
        with self._streams.hold(context.peer()):
            async for response in self._watch(request):
                yield response

    async def _watch(self, request: saga_pb2.WatchSagaRequest) -> AsyncIterator[saga_pb2.WatchSagaResponse]:
        state = await self._load(request.saga_id)
        wire = convert.SagaWire(state)
        yield saga_pb2.WatchSagaResponse(saga=wire.message)
        if state.terminal:
            return
        async with contextlib.aclosing(self._repo.store.subscribe(request.saga_id, state.version)) as events:
            async for recorded in events:
                apply(state, recorded.event)
                yield saga_pb2.WatchSagaResponse(event=convert.event_to_proto(recorded),
                                                 saga=wire.update(state, recorded.event))
                if state.terminal:
                    return

    @maps_domain_errors
    async def AbortSaga(
        self, request: saga_pb2.AbortSagaRequest, context: grpc.aio.ServicerContext
    ) -> saga_pb2.AbortSagaResponse:
        check_saga_id(request.saga_id)
        raise_if(names.printable_text(request.reason, "reason", MAX_REASON, multiline=True))
        state = await self._orchestrator.abort(request.saga_id, request.reason)
        return saga_pb2.AbortSagaResponse(saga=convert.saga_to_proto(state))

    async def _load(self, saga_id: str) -> SagaState:
        """The saga as recorded: from its driver when it runs here, else from Consul. A copy."""
        check_saga_id(saga_id)
        live = self._orchestrator.live_state(saga_id)
        if live is not None:
            return live.clone()
        state = await self._repo.load(saga_id)
        if state is None:
            raise NotFoundError(f"no saga {saga_id!r}")
        return state


def _trace_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's W3C trace id when it sent one, so the saga joins the caller's trace."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent":
            found = TRACEPARENT.fullmatch(value if isinstance(value, str) else value.decode(errors="replace"))
            if found:
                return found.group(1)
    return new_trace_id()
