"""Registry requests a careless or hostile client sends: each gets a clear error and changes nothing."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest

from controlplane.errors import field_violations
from controlplane.registry.store import MAX_SERVICE_ANSWER_BYTES
from controlplane.v1 import registry_pb2, registry_pb2_grpc
from tests.helpers import HealthServer


def agent_services(consul) -> dict:
    with urllib.request.urlopen(f"http://{consul.http_addr}/v1/agent/services", timeout=5) as answer:
        return json.loads(answer.read())


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call(request, timeout=10)
    return failure.value


@pytest.mark.parametrize("name", ["x\n", "order\n", "Order", "a" * 64, "\u202eorder", "or der", "x\x00"])
def test_register_refuses_service_names_outside_the_grammar(registry, consul, name: str) -> None:
    before = agent_services(consul)
    error = refused(registry.Register, registry_pb2.RegisterRequest(service=name, address="127.0.0.1", port=1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(error)] == ["service"]
    assert agent_services(consul) == before


@pytest.mark.parametrize(("fields", "field"), [
    ({"address": "0.0.0.0"}, "address"),
    ({"address": "::"}, "address"),
    ({"address": "224.0.0.1"}, "address"),
    ({"version": "v" * 513}, "version"),
    ({"version": "1.0\n"}, "version"),
    ({"instance_id": "id\n"}, "instance_id"),
    ({"metadata": {f"k{i}": "v" for i in range(64)}}, "metadata"),
    ({"tags": ["t"] * 65}, "tags"),
])
def test_register_refuses_what_consul_would_refuse_before_consul_sees_it(
        registry, consul, service_name, fields, field) -> None:
    before = agent_services(consul)
    request = registry_pb2.RegisterRequest(service=service_name, address="127.0.0.1", port=1,
                                           check={"ttl": {"ttl": {"seconds": 30}}})
    for key, value in fields.items():
        if isinstance(value, dict):
            getattr(request, key).update(value)
        elif isinstance(value, list):
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    error = refused(registry.Register, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert field in {v.field for v in field_violations(error)}
    assert agent_services(consul) == before


@pytest.mark.parametrize("nanos", [1_000_000_000, -1_000_000_000])
def test_durations_with_nanos_out_of_range_are_invalid(registry, service_name, nanos) -> None:
    error = refused(registry.Register, registry_pb2.RegisterRequest(
        service=service_name, address="127.0.0.1", port=1, check={"ttl": {"ttl": {"seconds": 30, "nanos": nanos}}}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "check.ttl.ttl" in {v.field for v in field_violations(error)}


def test_a_huge_bad_value_gets_an_error_that_fits_grpc_metadata(registry, service_name) -> None:
    error = refused(registry.Register, registry_pb2.RegisterRequest(
        service=service_name, instance_id="i" * 20_000, address="127.0.0.1", port=1, tags=[""] * 60))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(error)
    assert 1 < len(violations) <= 11
    assert len(error.details()) <= 1000
    assert "20000 characters" in error.details()


def test_the_control_plane_s_own_liveness_instance_cannot_be_deregistered(registry, consul) -> None:
    own = [s for s in agent_services(consul).values() if s["Service"] == "controlplane-saga"]
    assert own and all(s["Port"] > 0 for s in own)  # listed where the replica serves
    for call, request in ((registry.Deregister, registry_pb2.DeregisterRequest(instance_id=own[0]["ID"])),
                          (registry.Heartbeat, registry_pb2.HeartbeatRequest(instance_id=own[0]["ID"]))):
        assert refused(call, request).code() == grpc.StatusCode.FAILED_PRECONDITION
    replace = registry_pb2.RegisterRequest(service="intruder", instance_id=own[0]["ID"], address="127.0.0.1", port=1)
    assert refused(registry.Register, replace).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert own[0]["ID"] in agent_services(consul)
    assert refused(registry.Register, registry_pb2.RegisterRequest(
        service="controlplane-saga", address="127.0.0.1", port=1)).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_discover_of_many_unknown_names_leaves_discovery_of_real_services_working(
        registry, register, service_name, health_server: HealthServer) -> None:
    for i in range(150):  # more than the HTTP pool once held
        assert list(registry.Discover(registry_pb2.DiscoverRequest(service=f"never-{i}"), timeout=5).instances) == []
    register(service=service_name, address="127.0.0.1", port=health_server.port)
    found = registry.Discover(registry_pb2.DiscoverRequest(service=service_name), timeout=5)
    assert [i.port for i in found.instances] in ([], [health_server.port])  # passing within the check interval
    assert not found.stale


def test_one_connection_cannot_hold_unbounded_watch_streams(control_plane, service_name) -> None:
    with grpc.insecure_channel(control_plane.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        streams = [stub.Watch(registry_pb2.WatchRequest(service=service_name), timeout=30) for _ in range(101)]
        codes = []
        for stream in streams:
            try:
                next(stream)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
        for stream in streams:
            stream.cancel()
    assert codes.count(grpc.StatusCode.OK) == 100
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1


def test_a_body_that_is_no_protobuf_is_invalid_argument_on_every_service(channel) -> None:
    for method in ("/controlplane.v1.RegistryService/Register", "/controlplane.v1.SagaService/StartSaga",
                   "/controlplane.v1.ConfigService/SetConfig", "/controlplane.v1.RegistryService/Watch"):
        call = channel.unary_stream(method) if method.endswith("Watch") else channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as failure:
            answer = call(b"\xff\xff\xff", timeout=5)
            if method.endswith("Watch"):
                next(answer)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert [v.field for v in field_violations(failure.value)] == ["request"]


def test_instances_with_the_largest_tags_and_metadata_cannot_make_a_service_undiscoverable(
        registry, consul, service_name) -> None:
    # 110 such instances made every Discover answer and Watch message of the service 5.4 MB, over the
    # 4 MiB gRPC clients take: the service was undiscoverable for everyone. Registered 60 at once here,
    # so the budget must also hold against registrations racing each other.
    fat = {"tags": [f"t{i:02d}" + "x" * 250 for i in range(64)],
           "metadata": {f"k{i:02d}": "v" * 512 for i in range(62)}}
    calls = [registry.Register.future(registry_pb2.RegisterRequest(
        service=service_name, instance_id=f"fat-{n}", address="127.0.0.1", port=1000 + n,
        check={"ttl": {"ttl": {"seconds": 300}}}, **fat), timeout=120) for n in range(60)]
    refusals = [call.exception() for call in calls if call.exception() is not None]
    registered = {call.result().instance.instance_id for call in calls if call.exception() is None}
    assert refusals and registered
    assert {error.code() for error in refusals} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all("bytes in a Discover answer" in error.details() for error in refusals)
    assert {s["ID"] for s in agent_services(consul).values() if s["Service"] == service_name} == registered

    answer = registry.Discover(registry_pb2.DiscoverRequest(service=service_name), timeout=10)
    assert {i.instance_id for i in answer.instances} == registered
    assert answer.ByteSize() <= MAX_SERVICE_ANSWER_BYTES
    watch = registry.Watch(registry_pb2.WatchRequest(service=service_name, include_unhealthy=True), timeout=10)
    assert len(next(watch).instances) == len(registered)
    watch.cancel()
    again = sorted(registered)[0]  # re-asserting a registration as it is still passes at the budget
    registry.Register(registry_pb2.RegisterRequest(service=service_name, instance_id=again, address="127.0.0.1",
                                                   port=1000 + int(again.split("-")[1]),
                                                   check={"ttl": {"ttl": {"seconds": 300}}}, **fat), timeout=30)


@pytest.mark.parametrize("note", ["n" * 1025, "alive\x1b[2J", "\u202ealive"])
def test_a_heartbeat_note_is_bounded_printable_text(registry, consul, service_name, note) -> None:
    instance = registry.Register(registry_pb2.RegisterRequest(
        service=service_name, address="127.0.0.1", port=1, check={"ttl": {"ttl": {"seconds": 30}}}),
        timeout=10).instance
    error = refused(registry.Heartbeat, registry_pb2.HeartbeatRequest(instance_id=instance.instance_id, note=note))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(error)] == ["note"]
    registry.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=instance.instance_id, note="line one\nline two"),
                       timeout=10)
