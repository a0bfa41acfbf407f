"""Where a registration goes and what it replaces, decided from the placements alone (no Consul)."""

from __future__ import annotations

from controlplane.registry.model import Instance
from controlplane.registry.store import Placement, home_and_stale


def placement(instance_id: str, node: str, port: int = 9000, agent: str = "") -> Placement:
    return Placement(instance_id, "svc", "127.0.0.1", port, node, agent or f"{node}:8500")


INSTANCE = Instance(service="svc", instance_id="svc-1", address="127.0.0.1", port=9000)


def test_a_registration_on_another_agent_stays_there_and_copies_elsewhere_go() -> None:
    theirs, copy_here = placement("svc-1", "b"), placement("svc-1", "a")
    home, stale = home_and_stale([theirs], INSTANCE, node="a")
    assert (home, stale) == (theirs, [])  # re-asserting through replica a keeps it on b
    home, stale = home_and_stale([theirs, copy_here], INSTANCE, node="a")
    assert (home, stale) == (copy_here, [theirs])  # a copy on this node wins; the other goes


def test_another_instance_at_the_same_address_and_port_is_replaced() -> None:
    ghost = placement("svc-old", "b")
    other_port = placement("svc-2", "b", port=9001)
    home, stale = home_and_stale([ghost, other_port], INSTANCE, node="a")
    assert (home, stale) == (None, [ghost])


def test_a_registration_without_an_agent_address_is_not_a_home_elsewhere() -> None:
    foreign = Placement("svc-1", "svc", "127.0.0.1", 9000, "b", "")
    home, stale = home_and_stale([foreign], INSTANCE, node="a")
    assert (home, stale) == (None, [foreign])
