"""Authorization on the control plane: each rule of the policy allowed and denied, nothing changed by a
refused call, and the author in config history being the caller's identity."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from controlplane.client import ClientTLS, connect
from controlplane.config.wire import to_struct
from controlplane.security.devcerts import LocalCA, spiffe_id
from controlplane.security.identity import token_digest
from controlplane.v1 import (
    config_pb2,
    config_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    saga_pb2,
    saga_pb2_grpc,
    xds_pb2,
    xds_pb2_grpc,
)
from tests.helpers import ControlPlaneProcess, ttl
from tests.security.conftest import client_tls

OPERATOR_TOKEN = "s3cret-operator-token"
POLICY = {
    "trust_domain": "controlplane",
    "operators": ["spiffe://controlplane/operator/*"],
    "start_sagas": {"order": ["place-order"]},
    "read_config": {"payment": ["shared-limits"]},
    "tokens": [{"identity": "spiffe://controlplane/operator/ci", "sha256": token_digest(OPERATOR_TOKEN)}],
}
DENIED, UNAUTHENTICATED = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "authz.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return path


@pytest.fixture(scope="module")
def plane(consul: object, ca: LocalCA, policy_file: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ControlPlaneProcess]:
    server = ca.issue("authz-controlplane", [spiffe_id("service", "controlplane")])
    process = ControlPlaneProcess(
        consul.http_addr,  # type: ignore[attr-defined]
        extra_args=["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.cert_path),
                    "--authz-policy", str(policy_file)],
        log_path=tmp_path_factory.mktemp("authz") / "cp.log", tls=client_tls(ca, "operator", "tests"),
    ).start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def as_(plane: ControlPlaneProcess, ca: LocalCA) -> Iterator[Callable[[str, str], grpc.Channel]]:
    """as_(kind, name): a channel presenting spiffe://controlplane/KIND/NAME."""
    channels: dict[tuple[str, str], grpc.Channel] = {}

    def channel(kind: str, name: str) -> grpc.Channel:
        if (kind, name) not in channels:
            channels[kind, name] = connect(plane.address, credentials=client_tls(ca, kind, name)).channel()
        return channels[kind, name]

    yield channel
    for made in channels.values():
        made.close()


def refused(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code()


def registry(channel: grpc.Channel) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(channel)


def config(channel: grpc.Channel) -> config_pb2_grpc.ConfigServiceStub:
    return config_pb2_grpc.ConfigServiceStub(channel)


def register(channel: grpc.Channel, service: str, port: int) -> registry_pb2.Instance:
    return registry(channel).Register(registry_pb2.RegisterRequest(
        service=service, address="127.0.0.1", port=port, check=ttl(30)), timeout=5).instance


def instances(channel: grpc.Channel, service: str) -> list[str]:
    return [i.instance_id for i in registry(channel).Discover(
        registry_pb2.DiscoverRequest(service=service), timeout=5).instances]


# --- identity ------------------------------------------------------------------------------------------------


def test_a_certificate_without_an_identity_is_unauthenticated_and_changes_nothing(
    plane: ControlPlaneProcess, ca: LocalCA, as_: Callable[[str, str], grpc.Channel]
) -> None:
    anonymous = ca.issue("anonymous", uris=())  # signed by the CA, but no SPIFFE ID
    tls = ClientTLS(str(ca.cert_path), str(anonymous.cert), str(anonymous.key))
    with connect(plane.address, credentials=tls).channel() as channel:
        assert refused(lambda: register(channel, "authz-anon", 7001)) == UNAUTHENTICATED
    assert instances(as_("operator", "tests"), "authz-anon") == []


def test_health_needs_no_identity(plane: ControlPlaneProcess, ca: LocalCA) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    anonymous = ca.issue("anonymous-health", uris=())
    tls = ClientTLS(str(ca.cert_path), str(anonymous.cert), str(anonymous.key))
    with connect(plane.address, credentials=tls).channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- registry ------------------------------------------------------------------------------------------------


def test_a_service_registers_heartbeats_and_deregisters_only_its_own_instances(
    as_: Callable[[str, str], grpc.Channel]
) -> None:
    order, payment, operator = as_("service", "order"), as_("service", "payment"), as_("operator", "tests")
    mine = register(order, "order", 7101)
    try:
        assert refused(lambda: register(payment, "order", 7102)) == DENIED
        assert instances(operator, "order") == [mine.instance_id]
        beat = registry_pb2.HeartbeatRequest(instance_id=mine.instance_id)
        assert refused(lambda: registry(payment).Heartbeat(beat, timeout=5)) == DENIED
        registry(order).Heartbeat(beat, timeout=5)
        gone = registry_pb2.DeregisterRequest(instance_id=mine.instance_id)
        assert refused(lambda: registry(payment).Deregister(gone, timeout=5)) == DENIED
        assert instances(payment, "order") == [mine.instance_id]  # discovery is open to every identity
        registry(order).Deregister(gone, timeout=5)
        assert instances(operator, "order") == []
    finally:
        with contextlib.suppress(grpc.RpcError):  # already gone when the test got through
            registry(operator).Deregister(registry_pb2.DeregisterRequest(instance_id=mine.instance_id), timeout=5)


# --- config --------------------------------------------------------------------------------------------------


def test_services_read_their_own_config_and_what_read_config_lists(as_: Callable[[str, str], grpc.Channel]) -> None:
    for service in ("payment", "shared-limits", "order"):
        config(as_("operator", "tests")).SetConfig(
            config_pb2.SetConfigRequest(service=service, content=to_struct({"v": 1})), timeout=5)
    read = config_pb2.GetConfigRequest
    config(as_("service", "payment")).GetConfig(read(service="payment"), timeout=5)
    config(as_("service", "payment")).GetConfig(read(service="shared-limits"), timeout=5)
    assert refused(lambda: config(as_("service", "payment")).GetConfig(read(service="order"), timeout=5)) == DENIED
    assert refused(lambda: config(as_("service", "order")).GetConfig(read(service="shared-limits"), timeout=5)) \
        == DENIED
    watch = config(as_("service", "order")).WatchConfig(config_pb2.WatchConfigRequest(service="payment"), timeout=5)
    assert refused(lambda: next(iter(watch))) == DENIED
    flag = config_pb2.EvaluateFlagRequest(service="payment", flag="x")
    assert refused(lambda: config(as_("service", "order")).EvaluateFlag(flag, timeout=5)) == DENIED


def test_only_operators_write_config_and_the_author_is_their_identity(
    as_: Callable[[str, str], grpc.Channel]
) -> None:
    write = config_pb2.SetConfigRequest(service="authz-written", content=to_struct({"limit": 1}),
                                        author="someone-else")
    assert refused(lambda: config(as_("service", "authz-written")).SetConfig(write, timeout=5)) == DENIED
    operator = config(as_("operator", "alice"))
    nothing = config_pb2.GetConfigRequest(service="authz-written")
    assert refused(lambda: operator.GetConfig(nothing, timeout=5)) == grpc.StatusCode.NOT_FOUND  # nothing written
    operator.SetConfig(write, timeout=5)
    history = operator.ListVersions(config_pb2.ListVersionsRequest(service="authz-written"), timeout=5).versions
    assert [v.author for v in history] == ["spiffe://controlplane/operator/alice"]
    schema = config_pb2.SetSchemaRequest(service="authz-written", schema=to_struct({"type": "object"}))
    assert refused(lambda: config(as_("service", "authz-written")).SetSchema(schema, timeout=5)) == DENIED
    rollback = config_pb2.RollbackRequest(service="authz-written", to_version=1, expected_version=1)
    assert refused(lambda: config(as_("service", "authz-written")).Rollback(rollback, timeout=5)) == DENIED


def test_a_refusal_names_what_the_request_named_cut_to_size(as_: Callable[[str, str], grpc.Channel]) -> None:
    huge = "s" * 100_000  # authorization runs before the handler checks names: the reason must not echo it whole
    calls = [
        lambda: config(as_("service", "payment")).GetConfig(config_pb2.GetConfigRequest(service=huge), timeout=5),
        lambda: registry(as_("service", "payment")).Register(registry_pb2.RegisterRequest(
            service=huge, address="127.0.0.1", port=1, check=ttl(30)), timeout=5),
        lambda: saga_pb2_grpc.SagaServiceStub(as_("service", "payment")).StartSaga(
            saga_pb2.StartSagaRequest(definition_name=huge), timeout=5),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert error.value.code() == DENIED and "100000 characters" in error.value.details()
        assert len(error.value.details()) < 500


# --- sagas and xDS -------------------------------------------------------------------------------------------


def test_a_service_starts_only_the_sagas_it_is_allowed(as_: Callable[[str, str], grpc.Channel]) -> None:
    def start(name: str, definition: str) -> grpc.StatusCode:
        stub = saga_pb2_grpc.SagaServiceStub(as_("service", name))
        return refused(lambda: stub.StartSaga(saga_pb2.StartSagaRequest(definition_name=definition), timeout=5))

    # Allowed through authorization: the definition does not exist, which the handler itself says.
    assert start("order", "place-order") == grpc.StatusCode.NOT_FOUND
    assert start("payment", "place-order") == DENIED
    assert start("order", "refund") == DENIED


def test_definitions_aborts_and_xds_status_are_for_operators(as_: Callable[[str, str], grpc.Channel]) -> None:
    service = as_("service", "order")
    sagas = saga_pb2_grpc.SagaServiceStub(service)
    definition = saga_pb2.RegisterDefinitionRequest(definition=saga_pb2.SagaDefinition(name="authz-def"))
    assert refused(lambda: sagas.RegisterDefinition(definition, timeout=5)) == DENIED
    assert refused(lambda: sagas.AbortSaga(saga_pb2.AbortSagaRequest(saga_id="x"), timeout=5)) == DENIED
    status = xds_pb2.ListXdsClientsRequest()
    assert refused(lambda: xds_pb2_grpc.XdsStatusServiceStub(service).ListXdsClients(status, timeout=5)) == DENIED
    xds_pb2_grpc.XdsStatusServiceStub(as_("operator", "tests")).ListXdsClients(status, timeout=5)
    sagas.ListSagas(saga_pb2.ListSagasRequest(), timeout=5)  # reads are open to every identity


# --- bearer tokens without TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_plane(consul: object, policy_file: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(consul.http_addr, extra_args=["--authz-policy", str(policy_file)],  # type: ignore[attr-defined]
                                  log_path=tmp_path_factory.mktemp("token") / "cp.log").start()
    yield process
    process.kill()


def test_a_bearer_token_is_an_identity_without_tls(token_plane: ControlPlaneProcess) -> None:
    write = config_pb2.SetConfigRequest(service="authz-token", content=to_struct({"a": 1}), author="claimed")
    for token in (None, "wrong-token"):
        with connect(token_plane.address, token=token).channel() as channel:
            assert refused(lambda channel=channel: config(channel).SetConfig(write, timeout=5)) == UNAUTHENTICATED
    with connect(token_plane.address, token=OPERATOR_TOKEN).channel() as channel:
        config(channel).SetConfig(write, timeout=5)
        history = config(channel).ListVersions(config_pb2.ListVersionsRequest(service="authz-token"), timeout=5)
    assert [v.author for v in history.versions] == ["spiffe://controlplane/operator/ci"]


def test_a_bearer_token_rides_asyncio_channels_too(token_plane: ControlPlaneProcess) -> None:
    import asyncio

    async def read(token: str | None) -> grpc.StatusCode:
        async with connect(token_plane.address, token=token).aio_channel() as channel:
            stub = config_pb2_grpc.ConfigServiceStub(channel)
            try:
                await stub.ListVersions(config_pb2.ListVersionsRequest(service="authz-token"), timeout=5)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

    assert asyncio.run(read(OPERATOR_TOKEN)) == grpc.StatusCode.OK
    assert asyncio.run(read(None)) == UNAUTHENTICATED
