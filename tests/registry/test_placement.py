"""Where a registration goes, what it replaces and whether the service has room for it, decided from the
placements alone (no Consul)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controlplane.errors import LimitExceeded
from controlplane.registry.model import Instance
from controlplane.registry.store import Placement, check_budget, home_and_stale
from controlplane.registry.wire import answer_bytes


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


def sized(instance_id: str, port: int, size: int) -> Placement:
    return Placement(instance_id, "svc", "127.0.0.1", port, "a", "a:8500", size)


def test_a_service_holds_at_most_max_instances_and_re_registering_one_always_passes() -> None:
    placed = [sized(f"svc-{n}", 9000 + n, 100) for n in range(3)]
    newcomer = Instance(service="svc", instance_id="svc-new", address="127.0.0.1", port=9100)
    with pytest.raises(LimitExceeded, match="svc has 3 instances, the most one service may have"):
        check_budget(newcomer, placed, max_instances=3, max_answer_bytes=10**6)
    check_budget(INSTANCE, placed, max_instances=3, max_answer_bytes=10**6)  # svc-1 at 9000 replaces svc-0
    check_budget(replace(newcomer, instance_id="svc-2"), placed, max_instances=3, max_answer_bytes=10**6)


def test_a_service_takes_at_most_max_answer_bytes() -> None:
    placed = [sized("svc-a", 9001, 600), sized("svc-b", 9002, 300)]
    newcomer = Instance(service="svc", instance_id="svc-new", address="127.0.0.1", port=9100)
    size = answer_bytes(newcomer)
    check_budget(newcomer, placed, max_instances=10, max_answer_bytes=900 + size)
    with pytest.raises(LimitExceeded, match=f"would take {900 + size:,} bytes"):
        check_budget(newcomer, placed, max_instances=10, max_answer_bytes=900 + size - 1)
    # the same newcomer in svc-a's place: svc-a's bytes no longer count
    check_budget(replace(newcomer, port=9001), placed, max_instances=10, max_answer_bytes=300 + size)
