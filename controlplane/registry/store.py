"""Where registrations are written to and read from Consul (the agents' APIs and health queries).

An instance lives on the Consul agent of the replica that registered it (Consul's agent API is local to
each agent), and its service metadata names that agent's HTTP address (`cp-agent`). So any replica can
heartbeat or deregister any instance: on its own agent directly, on another one through the address the
instance carries. An address and port hold one instance of a service: registering them again replaces
the instance (keeping its id unless the client names another), wherever it was registered before, so a
restarted process never leaves a ghost behind whose health check its successor would pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ConsulUnavailable, LimitExceeded, NotFoundError, PreconditionError
from controlplane.registry.model import Health, Instance
from controlplane.registry.validation import RESERVED_SERVICES
from controlplane.registry.wire import answer_bytes

log = logging.getLogger(__name__)

VERSION_META_KEY = "cp-version"
AGENT_META_KEY = "cp-agent"  # HTTP address of the Consul agent the instance is registered with

# What one service may hold. Discover answers and Watch messages carry every instance of a service, and
# gRPC clients refuse messages over 4 MiB by default: a service's instances stay within half of that, so
# a client registering instances with the largest tags and metadata allowed cannot make the service
# undiscoverable for everyone else (a Watch message is the set plus the instance it is about).
MAX_INSTANCES_PER_SERVICE = 1000
MAX_SERVICE_ANSWER_BYTES = 2 * 2**20
# Health queries one ListServices page makes at once.
LIST_QUERIES = 16


@dataclass(frozen=True)
class GrpcCheck:
    """Consul calls grpc.health.v1.Health/Check on the instance every `interval` seconds."""

    interval: float = 1.0
    timeout: float = 1.0
    health_service: str = ""


@dataclass(frozen=True)
class TtlCheck:
    """The instance must Heartbeat at least every `ttl` seconds."""

    ttl: float = 10.0


@dataclass(frozen=True)
class Registration:
    instance: Instance
    check: GrpcCheck | TtlCheck
    # Seconds an instance may stay critical before Consul removes it; None: never.
    deregister_critical_after: float | None = None


def _seconds(value: float) -> str:
    return f"{int(value * 1000)}ms"


def _check_body(reg: Registration) -> dict[str, Any]:
    inst, check = reg.instance, reg.check
    body: dict[str, Any] = {"CheckID": f"service:{inst.instance_id}", "Name": f"{inst.service} health"}
    if isinstance(check, GrpcCheck):
        target = f"{inst.address}:{inst.port}"
        body |= {
            "GRPC": f"{target}/{check.health_service}" if check.health_service else target,
            "GRPCUseTLS": False,
            "Interval": _seconds(check.interval),
            "Timeout": _seconds(check.timeout),
        }
    else:
        # Registering is itself a sign of life: start passing, then rely on heartbeats.
        body |= {"TTL": _seconds(check.ttl), "Status": "passing"}
    if reg.deregister_critical_after is not None:
        body["DeregisterCriticalServiceAfter"] = _seconds(reg.deregister_critical_after)
    return body


@dataclass(frozen=True)
class Placement:
    """Where one instance is registered: its Consul node, and that node's agent's HTTP address ("" when
    the instance was not registered through a control plane)."""

    instance_id: str
    service: str
    address: str
    port: int
    node: str
    agent: str
    size: int = 0  # bytes the instance takes in an answer (`wire.answer_bytes`)


class RegistryStore:
    """Registers instances with this replica's Consul agent and reads them back from Consul's health API.

    `client` serves short requests; `blocking_client` must allow requests longer than a blocking wait.
    `agent_addr` is where other replicas reach this replica's agent; `connect_agent(addr)` makes a client
    for another replica's agent.
    """

    def __init__(self, client: consul.aio.Consul, blocking_client: consul.aio.Consul, *, agent_addr: str = "",
                 connect_agent: Callable[[str], consul.aio.Consul] | None = None,
                 max_instances: int = MAX_INSTANCES_PER_SERVICE,
                 max_answer_bytes: int = MAX_SERVICE_ANSWER_BYTES) -> None:
        self._consul = client
        self._max_instances = max_instances
        self._max_answer_bytes = max_answer_bytes
        self._registering = _ServiceLocks()
        self._blocking = blocking_client
        self._agent_addr = agent_addr
        self._connect_agent = connect_agent
        self._node: str | None = None
        self._agents: dict[str, consul.aio.Consul] = {}

    async def close(self) -> None:
        agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            await agent.close()

    async def register(self, reg: Registration, *, replacing: bool = False) -> Instance:
        """Register an instance, replacing any instance of its service at the same address and port (or
        with the same id) wherever it is registered; the instance as registered. Unless the client named
        the id (`replacing`), an instance already at that address and port keeps its id, so registering
        again changes nothing. It also stays on the agent that holds it (when that agent answers), so a
        client re-asserting its registration through whichever replica never moves it between agents,
        which would restart its health check."""
        async with self._registering.hold(reg.instance.service):  # this replica checks the budget, then writes
            return await self._register(reg, replacing)

    async def _register(self, reg: Registration, replacing: bool) -> Instance:
        inst = reg.instance
        if replacing:
            services = await consul_call(self._consul.agent.services(), what="list agent services")
            _refuse_reserved(services.get(inst.instance_id), inst.instance_id)
        node = await self._local_node()
        placed = await self._placements(inst.service, sized=True)
        here = (inst.address, inst.port)
        if not replacing:
            same = [p for p in placed if (p.address, p.port) == here]
            if same:
                inst = replace(inst, instance_id=same[0].instance_id)
        check_budget(inst, placed, max_instances=self._max_instances, max_answer_bytes=self._max_answer_bytes)
        home, stale = home_and_stale(placed, inst, node)
        agent, agent_addr = self._consul, self._agent_addr
        if home is not None and home.node != node:
            agent, agent_addr = self._agent_of(home, node), home.agent
        try:
            await self._register_on(agent, agent_addr, reg, inst)
        except ConsulUnavailable:
            if agent is self._consul:
                raise
            assert home is not None  # its agent does not answer: the instance moves to this replica's agent
            log.warning("agent %s of node %s does not answer; registering %s here", home.agent, home.node,
                        inst.instance_id)
            await self._register_on(self._consul, self._agent_addr, reg, inst)
            stale.append(home)
        for old in stale:
            try:
                await self._deregister_at(old, node)
            except (ConsulUnavailable, NotFoundError) as exc:  # its node is gone: its checks fail already
                log.warning("could not remove %s (replaced by %s) from node %s: %s", old.instance_id,
                            inst.instance_id, old.node, exc.message)
        return inst

    async def _register_on(self, agent: consul.aio.Consul, agent_addr: str, reg: Registration,
                           inst: Instance) -> None:
        meta = dict(inst.metadata)
        if inst.version:
            meta[VERSION_META_KEY] = inst.version
        if agent_addr:
            meta[AGENT_META_KEY] = agent_addr
        await consul_call(
            agent.agent.service.register(
                inst.service,
                service_id=inst.instance_id,
                address=inst.address,
                port=inst.port,
                tags=list(inst.tags),
                meta=meta,
                check=_check_body(replace(reg, instance=inst)),
            ),
            what="register",
            write=True,
        )

    async def deregister(self, instance_id: str) -> None:
        node = await self._local_node()
        for placement in await self._find(instance_id):
            await self._deregister_at(placement, node)

    async def heartbeat(self, instance_id: str, note: str = "") -> None:
        node = await self._local_node()
        for placement in await self._find(instance_id):
            await self._heartbeat_at(placement, node, note)

    # -- where instances live -------------------------------------------------------------------

    async def _local_node(self) -> str:
        if self._node is None:
            me = await consul_call(self._consul.agent.self(), what="read the agent's own node")
            self._node = str(me["Config"]["NodeName"])
        return self._node

    async def service_of(self, instance_id: str) -> str | None:
        """The service an instance is registered under, or None when no instance has that id."""
        try:
            found = await self._find(instance_id)
        except NotFoundError:
            return None
        return found[0].service

    async def _placements(self, service: str, *, sized: bool = False) -> list[Placement]:
        """Every registration of `service`, passing or not; with `sized`, the bytes each takes in an answer."""
        _, entries = await consul_call(self._consul.health.service(service), what=f"health of {service}")
        return [_placement(entry, sized) for entry in entries or []]

    async def _find(self, instance_id: str) -> list[Placement]:
        """Every registration of `instance_id`, on any agent; NotFoundError when there is none."""
        services = await consul_call(self._consul.agent.services(), what="list agent services")
        local = services.get(instance_id)
        if local is not None:  # the common case: registered through this replica
            _refuse_reserved(local, instance_id)
            return [Placement(instance_id, local["Service"], local.get("Address", ""), int(local.get("Port") or 0),
                              await self._local_node(), self._agent_addr)]
        _, checks = await consul_call(
            self._consul.health.state("any", filter_expr=f'ServiceID == "{instance_id}"'),
            what=f"find instance {instance_id}",
        )
        names = {check["ServiceName"] for check in checks or [] if check.get("ServiceName")}
        for name in names:
            if name in RESERVED_SERVICES:
                raise PreconditionError(f"instance {instance_id!r} is the control plane's own ({name}); "
                                        "only the control plane changes it")
        found = [p for name in sorted(names) for p in await self._placements(name) if p.instance_id == instance_id]
        if not found:
            raise NotFoundError(f"no instance {instance_id!r} is registered")
        return found

    def _agent_of(self, placement: Placement, node: str) -> consul.aio.Consul:
        if placement.node == node:
            return self._consul
        if not placement.agent or self._connect_agent is None:
            raise PreconditionError(f"instance {placement.instance_id!r} is registered on Consul node "
                                    f"{placement.node!r}, which names no agent address; change it there")
        agent = self._agents.get(placement.agent)
        if agent is None:
            agent = self._agents[placement.agent] = self._connect_agent(placement.agent)
        return agent

    async def _deregister_at(self, placement: Placement, node: str) -> None:
        agent = self._agent_of(placement, node)
        await consul_call(agent.agent.service.deregister(placement.instance_id),
                          what=f"deregister on node {placement.node}")

    async def _heartbeat_at(self, placement: Placement, node: str, note: str) -> None:
        agent = self._agent_of(placement, node)
        checks = await consul_call(agent.agent.checks(), what=f"list checks on node {placement.node}")
        ttl_checks = [
            check_id
            for check_id, check in checks.items()
            if check.get("ServiceID") == placement.instance_id and check.get("Type") == "ttl"
        ]
        if not ttl_checks:
            raise PreconditionError(
                f"instance {placement.instance_id!r} has no TTL check; heartbeats apply to instances registered "
                "with a TTL health check (a gRPC check is run by Consul itself)"
            )
        for check_id in ttl_checks:
            await consul_call(agent.agent.check.ttl_pass(check_id, notes=note or None), what="heartbeat")

    async def fetch_instances(self, service: str, index: int, wait: float) -> tuple[int, tuple[Instance, ...]]:
        """Every instance of `service` with its health; blocks up to `wait` seconds for a change past `index`."""
        new_index, entries = await consul_call(
            self._blocking.health.service(service, index=index or None, wait=_seconds(wait)),
            what=f"health of {service}",
        )
        return int(new_index), _instances(entries)

    async def probe_instances(self, service: str, timeout: float) -> tuple[int, tuple[Instance, ...]]:
        """Every instance of `service` now, with one short (non-blocking) query."""
        new_index, entries = await consul_call(
            asyncio.wait_for(self._consul.health.service(service), timeout), what=f"health of {service}"
        )
        return int(new_index), _instances(entries)

    async def service_names(self) -> dict[str, list[str]]:
        """Every service in the catalog (but Consul's own) with the tags its instances carry."""
        _, services = await consul_call(self._consul.catalog.services(), what="list services")
        return {name: sorted(tags or []) for name, tags in services.items() if name != "consul"}

    async def instances_of(self, names: list[str]) -> list[tuple[Instance, ...]]:
        """The instances of each of `names`, with at most LIST_QUERIES health queries at a time."""
        gate = asyncio.Semaphore(LIST_QUERIES)

        async def one(name: str) -> tuple[Instance, ...]:
            async with gate:
                return (await self.fetch_instances(name, 0, 0))[1]

        return list(await asyncio.gather(*(one(name) for name in names)))


def home_and_stale(placed: list[Placement], inst: Instance, node: str) -> tuple[Placement | None, list[Placement]]:
    """Where registering `inst` should go, and which registrations it replaces.

    home: the registration of this very instance (its id, address and port) to keep using, preferring this
    replica's node, else one whose agent address is known; None: register on this replica's agent.
    stale: every other registration at the same address and port or with the same id, which must go (a
    registration of the id on this node is replaced in place when this node is home, so it is not stale).
    """
    here = (inst.address, inst.port)
    holders = [p for p in placed if p.instance_id == inst.instance_id and (p.address, p.port) == here]
    home = next((p for p in holders if p.node == node), None) or next((p for p in holders if p.agent), None)
    in_place_here = home is None or home.node == node
    stale = [p for p in placed
             if ((p.address, p.port) == here or p.instance_id == inst.instance_id) and p != home
             and not (in_place_here and p.node == node and p.instance_id == inst.instance_id)]
    return home, stale


def check_budget(inst: Instance, placed: list[Placement], *, max_instances: int, max_answer_bytes: int) -> None:
    """LimitExceeded if the service, with `inst` in it, would hold more instances or answer bytes than
    allowed. What `inst` replaces (its id, its address and port) does not count: re-registering an
    instance as it is always passes."""
    here = (inst.address, inst.port)
    kept = {p.instance_id: p.size for p in placed if p.instance_id != inst.instance_id and (p.address, p.port) != here}
    if len(kept) + 1 > max_instances:
        raise LimitExceeded(f"{inst.service} has {len(kept)} instances, the most one service may have "
                            f"({max_instances}); deregister some first")
    total = sum(kept.values()) + answer_bytes(inst)
    if total > max_answer_bytes:
        raise LimitExceeded(f"the instances of {inst.service} would take {total:,} bytes in a Discover answer, "
                            f"more than the {max_answer_bytes:,} one service may take: use fewer or shorter tags "
                            "and metadata")


def _refuse_reserved(service: dict[str, Any] | None, instance_id: str) -> None:
    if service is not None and service.get("Service") in RESERVED_SERVICES:
        raise PreconditionError(f"instance {instance_id!r} is the control plane's own ({service['Service']}); "
                                "only the control plane changes it")


def _instances(entries: list[dict[str, Any]] | None) -> tuple[Instance, ...]:
    """Consul health entries as instances, in instance-id order, one per id: should an id be registered on
    two agents (Register removes such copies, but Consul may still list one for a moment, or someone
    registered it outside the control plane), the healthiest copy stands for it, so Discover, Watch and
    ListServices all count it once."""
    best: dict[str, Instance] = {}
    for entry in entries or []:
        instance = _instance_from(entry)
        seen = best.get(instance.instance_id)
        if seen is None or (instance.health or Health.CRITICAL) < (seen.health or Health.CRITICAL):
            best[instance.instance_id] = instance
    return tuple(best[key] for key in sorted(best))


def _placement(entry: dict[str, Any], sized: bool = False) -> Placement:
    service = entry["Service"]
    return Placement(
        instance_id=service["ID"],
        service=service["Service"],
        address=service.get("Address") or entry["Node"]["Address"],
        port=int(service.get("Port") or 0),
        node=entry["Node"]["Node"],
        agent=(service.get("Meta") or {}).get(AGENT_META_KEY, ""),
        size=answer_bytes(_instance_from(entry)) if sized else 0,
    )


class _ServiceLocks:
    """One asyncio lock per service name while someone holds or waits for it (then it is dropped)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, service: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(service) or (asyncio.Lock(), 0)
        self._locks[service] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[service]
            if users > 1:
                self._locks[service] = (lock, users - 1)
            else:
                del self._locks[service]


def _instance_from(entry: dict[str, Any]) -> Instance:
    service = entry["Service"]
    meta = dict(service.get("Meta") or {})
    version = meta.pop(VERSION_META_KEY, "")
    meta.pop(AGENT_META_KEY, None)
    return Instance(
        service=service["Service"],
        instance_id=service["ID"],
        address=service.get("Address") or entry["Node"]["Address"],
        port=int(service.get("Port") or 0),
        version=version,
        tags=tuple(service.get("Tags") or ()),
        metadata=meta,
        health=Health.from_consul(check["Status"] for check in entry.get("Checks") or []),
    )
