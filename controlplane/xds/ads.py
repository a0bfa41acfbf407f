"""envoy.service.discovery.v3.AggregatedDiscoveryService: state-of-the-world ADS for stock gRPC clients.

Per stream and per type URL the server keeps what the client subscribed to, the version and nonce it last
sent, and what the client said of it: an ACK (the version it applied) or a NACK (its error text, logged and
counted; the client stays on its last good config and so does this server's view of it). A request whose
nonce is not the last one sent for its type is stale and ignored (the xDS protocol's rule). A type is sent
again when its resources change (their version is a hash of what they hold) or the subscription changes.
Resources that fail gRPC's rules (`resources.problems`) are not sent: the client keeps the last good ones.

What a client says is bounded before it is kept or logged: a resource name longer than MAX_CLIENT_TEXT is
INVALID_ARGUMENT (none of ours is that long), its node's texts and its NACK text are cut to that size, its
environment must be a valid environment name (else INVALID_ARGUMENT), and at most MAX_PENDING requests are
read ahead of the one being handled, so a client that writes without reading its responses is held back by
gRPC's flow control instead of filling this process's memory. A stream follows at most MAX_NAMES services
(RESOURCE_EXHAUSTED past it), one connection holds at most 100 ADS streams, and the watches behind the
services clients name come out of the share of the watch sets kept for clients (`views`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2

from controlplane.config.validation import check_environment
from controlplane.errors import DomainError, FieldViolation, LimitExceeded, grpc_status_for, raise_if
from controlplane.log_budget import LogBudget
from controlplane.names import shown
from controlplane.text import cut
from controlplane.watch.quota import DEFAULT_PER_CALLER, StreamQuota
from controlplane.xds.resources import LISTENER, TYPES, problems, service_of, version_of
from controlplane.xds.v1 import envoy_wire_pb2 as w
from controlplane.xds.views import ServiceView, ServiceViews

log = logging.getLogger(__name__)
_nacks = LogBudget(log)  # per node: a client NACKing in a loop writes a few lines a minute

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
METHOD = f"/{SERVICE}/StreamAggregatedResources"
ENVIRONMENT_KEY = "environment"  # node.metadata key naming the config environment a client follows
_CHANGED = object()  # in a stream's inbox: some view it uses has changed
# Names one stream may subscribe to per type, and services it may follow across its types: each valid service
# name costs two Consul watches (shared, and held within the share of the watch sets clients may take), so a
# client listing thousands is refused rather than let crowd out everyone's watches.
MAX_NAMES = 256
MAX_PENDING = 64  # requests read from a stream ahead of the one being handled
MAX_CLIENT_TEXT = 512  # characters kept of each text a client sends about itself (node id, NACK message, ...)


@dataclass
class Subscription:
    """One type URL on one stream."""

    names: frozenset[str] = frozenset()
    sent_version: str = ""
    nonce: str = ""
    acked_version: str = ""
    last_nack: str = ""
    nacks: int = 0
    responses: int = 0
    answered: frozenset[str] | None = None  # the names the last response answered


@dataclass
class Stream:
    """One ADS stream: who is on it and where each of its subscriptions stands."""

    peer: str
    node_id: str = ""
    node_cluster: str = ""
    user_agent: str = ""
    environment: str = ""
    connected_at: float = field(default_factory=time.time)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    unknown_types_told: bool = False  # a type URL this server does not serve has been logged


@dataclass
class Counters:
    """What every stream of this process did, for metrics and the status RPC."""

    responses: dict[str, int] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)
    nacks: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # resources this server built but did not send, because a client would refuse them

    @staticmethod
    def bump(table: dict[str, int], type_url: str) -> None:
        table[type_url] = table.get(type_url, 0) + 1


class AggregatedDiscovery:
    """The ADS server. `add_to_server()` puts it on a grpc.aio server."""

    def __init__(self, views: ServiceViews, identifier: str = "controlplane",
                 streams_per_connection: int = DEFAULT_PER_CALLER) -> None:
        self._views = views
        self._identifier = w.ControlPlaneId(identifier=identifier)
        self._nonces = itertools.count(1)
        self.streams: dict[int, Stream] = {}
        self.counters = Counters()
        self._ids = itertools.count(1)
        self._quota = StreamQuota("ADS", per_caller=streams_per_connection)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handler = grpc.stream_stream_rpc_method_handler(
            self.stream,
            request_deserializer=w.DiscoveryRequest.FromString,
            response_serializer=w.DiscoveryResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"StreamAggregatedResources": handler}),)
        )

    async def stream(self, requests: AsyncIterator[w.DiscoveryRequest], context: grpc.aio.ServicerContext
                     ) -> AsyncIterator[w.DiscoveryResponse]:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self._quota.hold(context.peer()))
            except LimitExceeded as exc:
                await context.abort_with_status(grpc_status_for(exc))
            async for response in self._serve(requests, context):
                yield response

    async def _serve(self, requests: AsyncIterator[w.DiscoveryRequest], context: grpc.aio.ServicerContext
                     ) -> AsyncIterator[w.DiscoveryResponse]:
        stream_id = next(self._ids)
        stream = Stream(peer=context.peer())
        self.streams[stream_id] = stream
        inbox: asyncio.Queue[w.DiscoveryRequest | object | None] = asyncio.Queue(MAX_PENDING)
        pending_change = False

        def on_change() -> None:  # one wake-up however many views changed meanwhile
            nonlocal pending_change
            if not pending_change:
                pending_change = True
                if not inbox.full():  # else the loop is about to wake anyway, and reads the flag
                    inbox.put_nowait(_CHANGED)

        used: dict[str, ServiceView] = {}
        reader = asyncio.get_running_loop().create_task(_read(requests, inbox))
        try:
            while True:
                items = [await inbox.get()]
                while not inbox.empty():
                    items.append(inbox.get_nowait())
                dirty: set[str] = set()
                for item in items:
                    if item is None:
                        return  # the client ended the stream
                    if item is not _CHANGED:
                        try:
                            dirty |= self._take(item, stream, used, on_change)  # type: ignore[arg-type]
                        except DomainError as exc:  # a bad node, too many names, no Consul watch left to start
                            await context.abort_with_status(grpc_status_for(exc))
                if pending_change:
                    pending_change = False
                    dirty |= {t for t, sub in stream.subscriptions.items() if sub.names}
                for type_url in sorted(dirty):
                    response = self._response(stream, type_url, used)
                    if response is not None:
                        yield response
        finally:
            reader.cancel()
            for service, view in used.items():
                view.off_change(on_change)
                self._views.release(service)
            del self.streams[stream_id]

    def _take(self, request: w.DiscoveryRequest, stream: Stream, used: dict[str, ServiceView],
              on_change: Callable[[], None]) -> set[str]:
        """Apply one request to the stream's state; the type URLs it asks to be (re)sent."""
        if request.HasField("node") and not stream.node_id:
            node = request.node
            value = node.metadata.fields.get(ENVIRONMENT_KEY)
            environment = value.string_value if value is not None else ""
            raise_if(check_environment(environment, f"node.metadata.{ENVIRONMENT_KEY}"))
            stream.environment = environment
            stream.node_id, stream.node_cluster = _clip(node.id), _clip(node.cluster)
            stream.user_agent = _clip(f"{node.user_agent_name} {node.user_agent_version}".strip())
        type_url = request.type_url
        if type_url not in TYPES:
            if not stream.unknown_types_told:  # once per stream: a client cannot fill the log with them
                stream.unknown_types_told = True
                log.info("xds: %s (%s) asked for %s, which this server does not serve", shown(stream.node_id),
                         stream.peer, shown(type_url))
            return set()
        sub = stream.subscriptions.setdefault(type_url, Subscription())
        if request.response_nonce:
            if request.response_nonce != sub.nonce:
                return set()  # stale: an answer to a response that has been superseded
            if request.HasField("error_detail"):
                sub.last_nack = _clip(request.error_detail.message)
                sub.nacks += 1
                Counters.bump(self.counters.nacks, type_url)
                _nacks.log(logging.WARNING, (stream.node_id, stream.peer), "xds: %s (%s) NACKed %s version %s: %s",
                           shown(stream.node_id), stream.peer, _short(type_url), sub.sent_version,
                           shown(request.error_detail.message, MAX_CLIENT_TEXT))
            else:
                sub.acked_version = request.version_info
                sub.last_nack = ""
                Counters.bump(self.counters.acks, type_url)
        names = frozenset(request.resource_names)
        if len(names) > MAX_NAMES:
            raise LimitExceeded(f"{len(names)} resource names of {_short(type_url)}; a stream may subscribe to at "
                                f"most {MAX_NAMES} per type")
        raise_if([FieldViolation(f"resource_names[{n}]", f"at most {MAX_CLIENT_TEXT} characters, got {len(name)}")
                  for n, name in enumerate(request.resource_names) if len(name) > MAX_CLIENT_TEXT])
        if names == sub.names and request.response_nonce:
            return set()
        self._resubscribe(stream, used, sub, type_url, names, on_change)
        return {type_url}

    def _resubscribe(self, stream: Stream, used: dict[str, ServiceView], sub: Subscription, type_url: str,
                     names: frozenset[str], on_change: Callable[[], None]) -> None:
        wanted = {service for s_type, s in stream.subscriptions.items() for name in (names if s is sub else s.names)
                  if (service := service_of(s_type, name)) is not None}
        if len(wanted) > MAX_NAMES:
            raise LimitExceeded(f"{len(wanted)} services across the stream's subscriptions; a stream may follow at "
                                f"most {MAX_NAMES}")
        sub.names = names
        for service in wanted - used.keys():
            view = self._views.use(service)
            view.on_change(on_change)
            used[service] = view
        for service in used.keys() - wanted:
            used.pop(service).off_change(on_change)
            self._views.release(service)

    def _response(self, stream: Stream, type_url: str, used: dict[str, ServiceView]) -> w.DiscoveryResponse | None:
        """The response for one type, or None when there is nothing new to send (or nothing sendable yet)."""
        sub = stream.subscriptions[type_url]
        found: list[tuple[str, bytes]] = []
        for name in sorted(sub.names):
            service = service_of(type_url, name)
            view = used.get(service) if service is not None else None
            if view is None:
                continue  # not a name this server makes: absent, as it does not exist
            resources = view.resources(stream.environment)
            if resources is None:
                return None  # not ready: say nothing rather than that it does not exist
            if type_url == LISTENER:
                wrong = problems(resources, name)
                if wrong:
                    self.counters.refused += 1
                    log.error("xds: not sending listener %s, gRPC would refuse it: %s", name, "; ".join(wrong))
                    return None
            body = resources.get(type_url, name)
            if body is not None:
                found.append((name, body))
        version = version_of(found)
        if version == sub.sent_version and sub.answered == sub.names:
            return None  # the client has all of it already
        sub.sent_version = version
        sub.answered = sub.names
        sub.nonce = str(next(self._nonces))
        sub.responses += 1
        Counters.bump(self.counters.responses, type_url)
        return w.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=sub.nonce,
            resources=[any_pb2.Any(type_url=type_url, value=body) for _, body in found],
            control_plane=self._identifier,
        )


async def _read(requests: AsyncIterator[w.DiscoveryRequest], inbox: asyncio.Queue[w.DiscoveryRequest | object | None]
                ) -> None:
    try:
        async for request in requests:
            await inbox.put(request)  # waits while MAX_PENDING are unhandled: the client's writes wait too
    except BaseException:
        with contextlib.suppress(asyncio.QueueFull):  # full: the stream is being ended by gRPC anyway
            inbox.put_nowait(None)
        raise
    await inbox.put(None)


def _clip(text: str) -> str:
    return cut(text, MAX_CLIENT_TEXT)


def _short(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]
