"""Registry domain objects: instances, health, filters, and the changes between two sets."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Health(enum.IntEnum):
    """Aggregated health of an instance's checks. Values match controlplane.v1.HealthStatus."""

    UNKNOWN = 0
    PASSING = 1
    WARNING = 2
    CRITICAL = 3

    @classmethod
    def from_consul(cls, statuses: Iterable[str]) -> Health:
        """The worst of a set of Consul check statuses ("passing", "warning", "critical")."""
        worst = cls.PASSING
        for status in statuses:
            worst = max(worst, _CONSUL_STATUS.get(status, cls.CRITICAL))
        return worst


_CONSUL_STATUS = {"passing": Health.PASSING, "warning": Health.WARNING, "critical": Health.CRITICAL}


@dataclass(frozen=True)
class Instance:
    """One running copy of a service, as the registry reports it."""

    service: str
    instance_id: str
    address: str
    port: int
    version: str = ""
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    health: Health = Health.UNKNOWN

    def same_registration(self, other: Instance) -> bool:
        """Equal apart from health."""
        return (self.address, self.port, self.version, self.tags, dict(self.metadata)) == (
            other.address,
            other.port,
            other.version,
            other.tags,
            dict(other.metadata),
        )


@dataclass(frozen=True)
class InstanceFilter:
    """Narrows a service's instances; every given criterion must hold."""

    version: str = ""
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def matches(self, instance: Instance) -> bool:
        if self.version and instance.version != self.version:
            return False
        if not self.tags.issubset(instance.tags):
            return False
        return all(instance.metadata.get(key) == value for key, value in self.metadata.items())


class ChangeKind(enum.IntEnum):
    """Values match controlplane.v1.WatchEventType."""

    ADDED = 2
    REMOVED = 3
    HEALTH_CHANGED = 4
    UPDATED = 5


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    instance: Instance


def visible(instances: Iterable[Instance], flt: InstanceFilter, include_unhealthy: bool) -> list[Instance]:
    """The instances a Discover or Watch with this filter shows, ordered by instance id."""
    shown = [i for i in instances if flt.matches(i) and (include_unhealthy or i.health == Health.PASSING)]
    return sorted(shown, key=lambda i: i.instance_id)


def changes_between(before: Iterable[Instance], after: Iterable[Instance]) -> list[Change]:
    """What happened between two views of a set: removals first, then additions and updates."""
    old = {i.instance_id: i for i in before}
    new = {i.instance_id: i for i in after}
    found = [Change(ChangeKind.REMOVED, old[key]) for key in sorted(old.keys() - new.keys())]
    for key in sorted(new):
        instance = new[key]
        previous = old.get(key)
        if previous is None:
            found.append(Change(ChangeKind.ADDED, instance))
        elif not previous.same_registration(instance):
            found.append(Change(ChangeKind.UPDATED, instance))
        elif previous.health != instance.health:
            found.append(Change(ChangeKind.HEALTH_CHANGED, instance))
    return found
