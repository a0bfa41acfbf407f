"""What the xDS server knows of each subscribed service: its passing instances and its traffic policy.

One view per service, shared by every ADS stream that asks for it, fed by the same blocking-query watches that
serve Discover/Watch (instances) and WatchConfig (documents). Views are made for whatever names clients
subscribe to, so they hold their watches as clients' streams do (`WatchSet.for_stream`): within the share of
each watch set that clients may take, the rest staying for Discover and the saga invoker.

A view is ready once Consul has answered for the instances: before that nothing is sent, so a client never
gets an empty endpoint set because the control plane has just started. When Consul cannot be reached the
watch reports its value stale and the view keeps the last set Consul confirmed, as Discover does; a policy
that no longer parses keeps the last good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from controlplane.config.model import ServiceState
from controlplane.errors import ConsulUnavailable
from controlplane.registry.model import Instance, InstanceFilter, visible
from controlplane.watch import BlockingQueryWatch
from controlplane.xds.resources import ServiceResources, build
from controlplane.xds.traffic import TrafficPolicy

log = logging.getLogger(__name__)

# service -> its watch, held while the context is entered (LimitExceeded when no more may be held)
InstanceWatches = Callable[[str], contextlib.AbstractContextManager[BlockingQueryWatch[tuple[Instance, ...]]]]
DocumentWatches = Callable[[str], contextlib.AbstractContextManager[BlockingQueryWatch[ServiceState]]]
_EVERY = InstanceFilter()
RESOLVE_TIMEOUT = 2.0


class ServiceView:
    """The latest resources of one service, rebuilt when its instances or its document change."""

    def __init__(self, service: str, instances: BlockingQueryWatch[tuple[Instance, ...]],
                 documents: BlockingQueryWatch[ServiceState], *, first_sync_timeout: float, zone: str,
                 claims: contextlib.ExitStack | None = None) -> None:
        self.service = service
        self._claims = claims or contextlib.ExitStack()  # what holds the two watches, given back by release()
        self.users = 0
        self.stale = False
        self._zone = zone
        self._instances: tuple[Instance, ...] | None = None
        self._state: ServiceState | None = None
        self._policies: dict[str, TrafficPolicy] = {}
        self._built: dict[str, ServiceResources] = {}
        self._listeners: set[Callable[[], None]] = set()
        self._documents_synced = False
        self._tasks = [
            asyncio.get_running_loop().create_task(self._follow_instances(instances), name=f"xds:{service}"),
            asyncio.get_running_loop().create_task(self._follow_documents(documents, first_sync_timeout),
                                                   name=f"xds-config:{service}"),
        ]

    @property
    def ready(self) -> bool:
        return self._instances is not None and self._documents_synced

    def resources(self, environment: str) -> ServiceResources | None:
        """The resources for clients of `environment`; None until the view is ready."""
        if not self.ready:
            return None
        environment = self._layered(environment)
        built = self._built.get(environment)
        if built is None:
            assert self._instances is not None
            built = build(self.service, self._instances, self._policy(environment), self._zone)
            self._built[environment] = built
        return built

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.add(listener)

    def off_change(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)

    def release(self) -> None:
        """Give the watches back at once (they may be claimed again); the view follows them no longer."""
        self._claims.close()

    async def stop(self) -> None:
        self.release()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _layered(self, environment: str) -> str:
        """`environment` if it has a layer of its own, else the default layer's "" (which it is served): the
        caches below hold one entry per configured environment, whatever names clients send."""
        if environment and self._state is not None and environment in self._state.layers:
            return environment
        return ""

    def _policy(self, environment: str) -> TrafficPolicy:
        content: Any = self._state.document(environment).content if self._state is not None else {}
        try:
            policy = TrafficPolicy.from_document(content)
        except ValueError as exc:
            policy = self._policies.get(environment, TrafficPolicy())
            log.error("%s: traffic_policy of environment %r is invalid (%s); keeping the last good one",
                      self.service, environment or "default", exc)
        self._policies[environment] = policy
        return policy

    def _changed(self) -> None:
        self._built.clear()
        if not self.ready:
            return
        for listener in list(self._listeners):
            listener()

    async def _follow_instances(self, watch: BlockingQueryWatch[tuple[Instance, ...]]) -> None:
        async for snapshot in watch.subscribe():
            self.stale = snapshot.stale
            if snapshot.value is None or (snapshot.stale and self._instances is not None):
                continue  # nothing Consul confirmed: keep what it last did
            passing = await _with_ip_addresses(visible(snapshot.value, _EVERY, include_unhealthy=False))
            if passing != self._instances:
                self._instances = passing
                self._changed()

    async def _follow_documents(self, watch: BlockingQueryWatch[ServiceState], first_sync_timeout: float) -> None:
        with contextlib.suppress(ConsulUnavailable):
            await watch.first_sync(first_sync_timeout)
        if not self._documents_synced:  # no answer in time: serve the default policy until one comes
            self._documents_synced = True
            self._changed()
        async for snapshot in watch.subscribe():
            if snapshot.value is not None and snapshot.value is not self._state:
                self._state = snapshot.value
                self._changed()


async def _with_ip_addresses(instances: list[Instance]) -> tuple[Instance, ...]:
    """The instances with IP addresses: gRPC clients refuse a whole endpoint set that holds a host name, so
    names are resolved here (off the event loop) and an instance whose name does not resolve is left out."""
    found = []
    for instance in instances:
        try:
            ipaddress.ip_address(instance.address)
            found.append(instance)
            continue
        except ValueError:
            pass
        try:
            answers = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(instance.address, instance.port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.warning("xds: leaving out %s: its address %r does not resolve (%s)", instance.instance_id,
                        instance.address, exc)
            continue
        found.append(dataclasses.replace(instance, address=answers[0][4][0]))
    return tuple(found)


class ServiceViews:
    """The views of the services some ADS stream subscribes to; a view ends with its last user."""

    def __init__(self, instances: InstanceWatches, documents: DocumentWatches, *, first_sync_timeout: float = 5.0,
                 zone: str = "controlplane") -> None:
        self._instances = instances
        self._documents = documents
        self._first_sync_timeout = first_sync_timeout
        self._zone = zone
        self._views: dict[str, ServiceView] = {}

    def use(self, service: str) -> ServiceView:
        """The view of `service`, made on first use; LimitExceeded when its watches cannot be held."""
        view = self._views.get(service)
        if view is None:
            claims = contextlib.ExitStack()  # the view's from here on, unless making it fails
            try:
                instances = claims.enter_context(self._instances(service))
                documents = claims.enter_context(self._documents(service))
                view = ServiceView(service, instances, documents, first_sync_timeout=self._first_sync_timeout,
                                   zone=self._zone, claims=claims)
            except BaseException:
                claims.close()
                raise
            self._views[service] = view
        view.users += 1
        return view

    def release(self, service: str) -> None:
        view = self._views.get(service)
        if view is None:
            return
        view.users -= 1
        if view.users <= 0:
            del self._views[service]
            view.release()
            asyncio.get_running_loop().create_task(view.stop())

    def __len__(self) -> int:
        return len(self._views)

    async def stop(self) -> None:
        views, self._views = list(self._views.values()), {}
        await asyncio.gather(*(view.stop() for view in views), return_exceptions=True)
