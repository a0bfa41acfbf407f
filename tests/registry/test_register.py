"""Register, Deregister and Heartbeat against a real Consul agent."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest

from controlplane.consul.local_agent import LocalConsul
from controlplane.errors import field_violations
from controlplane.v1 import registry_pb2
from tests.helpers import HealthServer, all_pages, grpc_check, ttl, wait_until


def consul_get(consul: LocalConsul, path: str) -> object:
    with urllib.request.urlopen(f"http://{consul.http_addr}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def discover(registry, service: str, **filters: object) -> list[registry_pb2.Instance]:
    flt = registry_pb2.InstanceFilter(**filters)
    return list(registry.Discover(registry_pb2.DiscoverRequest(service=service, filter=flt), timeout=5).instances)


def test_register_generates_an_instance_id_when_none_is_given(register, service_name):
    instance = register(service=service_name, address="127.0.0.1", port=9000, check=ttl())
    assert instance.instance_id.startswith(f"{service_name}-")
    assert instance.service == service_name


def test_registered_instance_is_in_consuls_own_catalog(register, service_name, consul):
    instance = register(
        service=service_name,
        instance_id=f"{service_name}-a",
        address="127.0.0.1",
        port=9001,
        version="1.2.3",
        tags=["blue"],
        metadata={"zone": "a"},
        check=ttl(),
    )
    catalog = consul_get(consul, f"/v1/catalog/service/{service_name}")
    assert [(e["ServiceID"], e["ServicePort"], e["ServiceTags"]) for e in catalog] == [
        (instance.instance_id, 9001, ["blue"])
    ]
    assert catalog[0]["ServiceMeta"]["zone"] == "a"


def test_registration_with_grpc_check_makes_consul_call_the_instance_health(
    register, service_name, consul, health_server, registry
):
    register(service=service_name, address="127.0.0.1", port=health_server.port, check=grpc_check())
    checks = consul_get(consul, f"/v1/health/checks/{service_name}")
    assert checks[0]["Type"] == "grpc"
    assert wait_until(lambda: discover(registry, service_name), what="grpc check to pass")


def test_discover_skips_instances_failing_their_health_check(register, registry, service_name):
    healthy, sick = HealthServer(), HealthServer()
    try:
        register(
            service=service_name,
            instance_id=f"{service_name}-ok",
            address="127.0.0.1",
            port=healthy.port,
            check=grpc_check(),
        )
        register(
            service=service_name,
            instance_id=f"{service_name}-sick",
            address="127.0.0.1",
            port=sick.port,
            check=grpc_check(),
        )
        wait_until(lambda: len(discover(registry, service_name)) == 2, what="both passing")
        sick.set_serving(False)
        wait_until(
            lambda: [i.instance_id for i in discover(registry, service_name)] == [f"{service_name}-ok"],
            what="the sick instance to leave Discover",
        )
        sick.set_serving(True)
        wait_until(lambda: len(discover(registry, service_name)) == 2, what="the instance to come back")
    finally:
        healthy.stop()
        sick.stop()


def test_discover_filters_by_version_tags_and_metadata(register, registry, service_name):
    def add(suffix: str, version: str, tags: list[str], metadata: dict[str, str]) -> None:
        register(
            service=service_name,
            instance_id=f"{service_name}-{suffix}",
            address="127.0.0.1",
            port=9100 + ord(suffix),  # an address and port hold one instance
            version=version,
            tags=tags,
            metadata=metadata,
            check=ttl(),
        )

    add("a", "1.0", ["blue", "canary"], {"zone": "east"})
    add("b", "1.0", ["blue"], {"zone": "west"})
    add("c", "2.0", ["green"], {"zone": "east"})
    wait_until(lambda: len(discover(registry, service_name)) == 3, what="three instances")

    def ids(**filters: object) -> list[str]:
        return [i.instance_id.removeprefix(f"{service_name}-") for i in discover(registry, service_name, **filters)]

    assert ids(version="1.0") == ["a", "b"]
    assert ids(tags=["blue", "canary"]) == ["a"]
    assert ids(metadata={"zone": "east"}) == ["a", "c"]
    assert ids(version="2.0", metadata={"zone": "west"}) == []
    assert {i.version for i in discover(registry, service_name)} == {"1.0", "2.0"}


def test_discover_of_an_unknown_service_is_empty(registry, service_name):
    assert discover(registry, service_name) == []


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"service": "", "address": "127.0.0.1", "port": 80}, "service"),
        ({"service": "Has Spaces", "address": "127.0.0.1", "port": 80}, "service"),
        ({"service": "ok", "address": "127.0.0.1", "port": 0}, "port"),
        ({"service": "ok", "address": "127.0.0.1", "port": 70000}, "port"),
        ({"service": "ok", "address": "not an address!", "port": 80}, "address"),
        ({"service": "ok", "address": "", "port": 80}, "address"),
        (
            {"service": "ok", "address": "127.0.0.1", "port": 80, "instance_id": "bad id/with slash"},
            "instance_id",
        ),
        (
            {"service": "ok", "address": "127.0.0.1", "port": 80, "metadata": {"cp-version": "x"}},
            "metadata['cp-version']",
        ),
    ],
)
def test_register_rejects_bad_input_with_field_violations_and_writes_nothing(registry, consul, fields, bad_field):
    before = consul_get(consul, "/v1/agent/services")
    with pytest.raises(grpc.RpcError) as failure:
        registry.Register(registry_pb2.RegisterRequest(**fields), timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field in [v.field for v in field_violations(failure.value)]
    assert consul_get(consul, "/v1/agent/services") == before


def test_register_rejects_deregister_after_below_consuls_minimum(registry, service_name):
    check = ttl()
    check.deregister_critical_after.FromSeconds(5)
    with pytest.raises(grpc.RpcError) as failure:
        registry.Register(
            registry_pb2.RegisterRequest(service=service_name, address="127.0.0.1", port=80, check=check),
            timeout=5,
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(failure.value)] == ["check.deregister_critical_after"]


def test_deregister_removes_the_instance_from_discover_and_consul(register, registry, service_name, consul):
    instance = register(service=service_name, address="127.0.0.1", port=9200, check=ttl())
    wait_until(lambda: discover(registry, service_name), what="instance visible")
    registry.Deregister(registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5)
    wait_until(lambda: discover(registry, service_name) == [], what="instance gone")
    assert consul_get(consul, f"/v1/catalog/service/{service_name}") == []


@pytest.mark.parametrize("rpc", ["Deregister", "Heartbeat"])
def test_unknown_instance_is_not_found(registry, rpc):
    request = getattr(registry_pb2, f"{rpc}Request")(instance_id="no-such-instance")
    with pytest.raises(grpc.RpcError) as failure:
        getattr(registry, rpc)(request, timeout=5)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("rpc", ["Deregister", "Heartbeat"])
def test_empty_instance_id_is_invalid(registry, rpc):
    with pytest.raises(grpc.RpcError) as failure:
        getattr(registry, rpc)(getattr(registry_pb2, f"{rpc}Request")(), timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(failure.value)] == ["instance_id"]


def test_ttl_instance_turns_critical_without_heartbeats_and_passes_again_after_one(register, registry, service_name):
    instance = register(service=service_name, address="127.0.0.1", port=9300, check=ttl(1))
    assert discover(registry, service_name), "a fresh registration starts passing"
    wait_until(lambda: discover(registry, service_name) == [], timeout=10, what="TTL to expire")
    registry.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=instance.instance_id, note="alive"), timeout=5)
    assert wait_until(lambda: discover(registry, service_name), what="heartbeat to make it pass")


def test_heartbeat_on_a_grpc_checked_instance_is_a_failed_precondition(register, registry, service_name, health_server):
    instance = register(service=service_name, address="127.0.0.1", port=health_server.port, check=grpc_check())
    with pytest.raises(grpc.RpcError) as failure:
        registry.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=instance.instance_id), timeout=5)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_register_again_with_the_same_id_replaces_the_instance(register, registry, service_name):
    register(
        service=service_name,
        instance_id=f"{service_name}-x",
        address="127.0.0.1",
        port=9400,
        version="1",
        check=ttl(),
    )
    register(
        service=service_name,
        instance_id=f"{service_name}-x",
        address="127.0.0.1",
        port=9401,
        version="2",
        check=ttl(),
    )
    found = wait_until(lambda: [i for i in discover(registry, service_name) if i.version == "2"])
    assert [(i.port, i.version) for i in found] == [(9401, "2")]
    assert len(discover(registry, service_name)) == 1


def test_list_services_counts_instances_and_passing_ones(register, registry, service_name):
    register(service=service_name, address="127.0.0.1", port=9500, tags=["t1"], check=ttl())
    sick = register(service=service_name, address="127.0.0.1", port=9501, check=ttl(1))
    del sick

    def summary() -> registry_pb2.ServiceSummary | None:
        return next((s for page in list_pages(registry) for s in page.services if s.name == service_name), None)

    found = wait_until(
        lambda: (s := summary()) and s.passing_count == 1 and s,
        timeout=10,
        what="one of two instances to expire",
    )
    assert (found.instance_count, found.passing_count, list(found.tags)) == (2, 1, ["t1"])
    assert "consul" not in [s.name for page in list_pages(registry) for s in page.services]


def list_pages(registry, page_size: int = 0) -> list[registry_pb2.ListServicesResponse]:
    return all_pages(registry.ListServices, registry_pb2.ListServicesRequest, page_size)


def test_list_services_pages_in_name_order(register, registry, service_name):
    names = [f"{service_name}-{suffix}" for suffix in ("a", "b", "c")]
    for port, name in enumerate(names, start=9510):
        register(service=name, address="127.0.0.1", port=port, check=ttl())
    pages = list_pages(registry, page_size=2)
    listed = [s.name for page in pages for s in page.services]
    assert all(len(page.services) <= 2 for page in pages) and len(pages) >= 2
    assert listed == sorted(set(listed)) and set(names) <= set(listed)
    after_first = registry.ListServices(registry_pb2.ListServicesRequest(page_size=1, page_token=names[0]), timeout=10)
    assert [s.name for s in after_first.services] == [names[1]] and after_first.next_page_token == names[1]


def test_list_services_refuses_page_tokens_it_could_not_have_issued(registry):
    for token in ("x" * 513, "a\nb"):
        with pytest.raises(grpc.RpcError) as failure:
            registry.ListServices(registry_pb2.ListServicesRequest(page_token=token), timeout=10)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(failure.value)] == ["page_token"]
