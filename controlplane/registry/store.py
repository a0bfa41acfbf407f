"""Where registrations are written to and read from Consul (the local agent's API and health queries)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import NotFoundError, PreconditionError
from controlplane.registry.model import Health, Instance
from controlplane.registry.validation import RESERVED_SERVICES

VERSION_META_KEY = "cp-version"


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


class RegistryStore:
    """Registers instances with the local Consul agent and reads them back from Consul's health API.

    `client` serves short requests; `blocking_client` must allow requests longer than a blocking wait.
    """

    def __init__(self, client: consul.aio.Consul, blocking_client: consul.aio.Consul) -> None:
        self._consul = client
        self._blocking = blocking_client

    async def register(self, reg: Registration, *, replacing: bool = False) -> None:
        """Register (or, with the same instance id, replace) an instance. `replacing`: the client named the id,
        so make sure it is not one of the control plane's own instances."""
        inst = reg.instance
        if replacing:
            services = await consul_call(self._consul.agent.services(), what="list agent services")
            _refuse_reserved(services.get(inst.instance_id), inst.instance_id)
        meta = dict(inst.metadata)
        if inst.version:
            meta[VERSION_META_KEY] = inst.version
        await consul_call(
            self._consul.agent.service.register(
                inst.service,
                service_id=inst.instance_id,
                address=inst.address,
                port=inst.port,
                tags=list(inst.tags),
                meta=meta,
                check=_check_body(reg),
            ),
            what="register",
        )

    async def _local_service(self, instance_id: str) -> dict[str, Any]:
        services = await consul_call(self._consul.agent.services(), what="list agent services")
        service = services.get(instance_id)
        if service is None:
            raise NotFoundError(f"no instance {instance_id!r} is registered")
        _refuse_reserved(service, instance_id)
        return service

    async def deregister(self, instance_id: str) -> None:
        await self._local_service(instance_id)
        await consul_call(self._consul.agent.service.deregister(instance_id), what="deregister")

    async def heartbeat(self, instance_id: str, note: str = "") -> None:
        await self._local_service(instance_id)
        checks = await consul_call(self._consul.agent.checks(), what="list agent checks")
        ttl_checks = [
            check_id
            for check_id, check in checks.items()
            if check.get("ServiceID") == instance_id and check.get("Type") == "ttl"
        ]
        if not ttl_checks:
            raise PreconditionError(
                f"instance {instance_id!r} has no TTL check; heartbeats apply to instances registered "
                "with a TTL health check (a gRPC check is run by Consul itself)"
            )
        for check_id in ttl_checks:
            await consul_call(self._consul.agent.check.ttl_pass(check_id, notes=note or None), what="heartbeat")

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

    async def list_services(self) -> dict[str, tuple[list[str], tuple[Instance, ...]]]:
        """Every service in the catalog (but Consul's own) with its tags and instances."""
        _, services = await consul_call(self._consul.catalog.services(), what="list services")
        names = sorted(name for name in services if name != "consul")
        found = await asyncio.gather(*(self.fetch_instances(name, 0, 0) for name in names))
        return {
            name: (sorted(services[name] or []), instances) for name, (_, instances) in zip(names, found, strict=False)
        }


def _refuse_reserved(service: dict[str, Any] | None, instance_id: str) -> None:
    if service is not None and service.get("Service") in RESERVED_SERVICES:
        raise PreconditionError(f"instance {instance_id!r} is the control plane's own ({service['Service']}); "
                                "only the control plane changes it")


def _instances(entries: list[dict[str, Any]] | None) -> tuple[Instance, ...]:
    """Consul health entries as instances, in instance-id order."""
    return tuple(sorted((_instance_from(entry) for entry in entries or []), key=lambda i: i.instance_id))


def _instance_from(entry: dict[str, Any]) -> Instance:
    service = entry["Service"]
    meta = dict(service.get("Meta") or {})
    version = meta.pop(VERSION_META_KEY, "")
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
