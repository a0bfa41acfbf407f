"""Secret references resolve only for callers that ask, and the value never leaks anywhere else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import consul as consul_sync
import grpc
import pytest

from controlplane.config.store import PREFIX
from controlplane.v1 import config_pb2, config_pb2_grpc
from tests.config.conftest import StreamReader, content_of, get_config, set_config, set_schema
from tests.helpers import ControlPlaneProcess

SECRET_VALUE = f"s3cr3t-{uuid.uuid4().hex}"
REFERENCE = "payment/api-key"


@pytest.fixture(scope="module")
def secret_plane(consul, tmp_path_factory) -> Iterator[ControlPlaneProcess]:
    """A control plane whose environment holds the secret, logging to a file the tests can search."""
    log = tmp_path_factory.mktemp("secrets") / "cp.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTROLPLANE_SECRET_PAYMENT_API_KEY", SECRET_VALUE)
        process = ControlPlaneProcess(consul.http_addr, log_path=log).start()
    yield process
    process.kill()


@pytest.fixture
def stub(secret_plane) -> Iterator[config_pb2_grpc.ConfigServiceStub]:
    with grpc.insecure_channel(secret_plane.address) as channel:
        yield config_pb2_grpc.ConfigServiceStub(channel)


def leaks(message: object) -> bool:
    return SECRET_VALUE.encode() in message.SerializeToString()  # type: ignore[attr-defined]


def test_a_reference_is_resolved_only_for_callers_that_ask(stub, service):
    set_config(stub, service, {"api": {"key": {"$secret": REFERENCE}, "url": "https://pay"}})
    plain = get_config(stub, service, "prod")
    assert content_of(plain.document) == {"api": {"key": {"$secret": REFERENCE}, "url": "https://pay"}}
    assert not leaks(plain)
    resolved = get_config(stub, service, "prod", resolve_secrets=True)
    assert content_of(resolved.document)["api"]["key"] == SECRET_VALUE
    assert resolved.document.checksum == plain.document.checksum  # of the unresolved document


def test_watch_resolves_only_when_asked(stub, service):
    set_config(stub, service, {"key": {"$secret": REFERENCE}})
    plain = StreamReader(stub.WatchConfig(config_pb2.WatchConfigRequest(service=service), timeout=30))
    resolved = StreamReader(
        stub.WatchConfig(config_pb2.WatchConfigRequest(service=service, resolve_secrets=True), timeout=30)
    )
    assert not leaks(plain.next())
    assert content_of(resolved.next().document) == {"key": SECRET_VALUE}
    plain.close()
    resolved.close()


def test_history_versions_and_change_summaries_hold_only_the_reference(stub, service):
    set_config(stub, service, {"key": "placeholder"})
    set_config(stub, service, {"key": {"$secret": REFERENCE}}, expected=1)
    get_config(stub, service, resolve_secrets=True)  # resolving must not write anything back
    listed = stub.ListVersions(config_pb2.ListVersionsRequest(service=service), timeout=5)
    assert listed.versions[0].change_summary == f"set key=$secret({REFERENCE})"
    assert not leaks(listed)
    for version in (1, 2):
        assert not leaks(stub.GetVersion(config_pb2.GetVersionRequest(service=service, version=version), timeout=5))


def test_an_unresolvable_secret_is_failed_precondition_naming_the_reference_not_a_value(stub, service):
    set_config(stub, service, {"known": {"$secret": REFERENCE}, "db": {"password": {"$secret": "db/password"}}})
    with pytest.raises(grpc.RpcError) as failure:
        get_config(stub, service, resolve_secrets=True)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "db/password" in failure.value.details() and "content.db.password" in failure.value.details()
    assert SECRET_VALUE not in failure.value.details()
    assert REFERENCE not in failure.value.details()  # only the unresolvable one is named


def test_schema_errors_at_a_secret_name_the_reference_not_the_value(stub, service):
    set_schema(stub, service, {"properties": {"key": {"type": "integer"}}})
    with pytest.raises(grpc.RpcError) as failure:
        set_config(stub, service, {"key": {"$secret": REFERENCE}})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "secret reference" in failure.value.details() and SECRET_VALUE not in failure.value.details()


def test_the_value_is_nowhere_in_consul_or_the_control_plane_log(stub, service, consul, secret_plane):
    set_config(stub, service, {"key": {"$secret": REFERENCE}}, environment="prod")
    get_config(stub, service, "prod", resolve_secrets=True)
    host, port = consul.http_addr.split(":")
    _, items = consul_sync.Consul(host=host, port=int(port)).kv.get(PREFIX, recurse=True)
    assert items and not any(SECRET_VALUE.encode() in (item["Value"] or b"") for item in items)
    assert secret_plane.log_path is not None
    assert SECRET_VALUE not in secret_plane.log_path.read_text()
