"""History: every write is a version with author, time, message and change summary; rollback adds one; a
service's history keeps its latest --config-history versions."""

from __future__ import annotations

import time
from collections.abc import Iterator

import consul as consul_module
import grpc
import pytest

from controlplane.v1 import config_pb2, config_pb2_grpc
from tests.config.conftest import content_of, get_config, set_config
from tests.helpers import ControlPlaneProcess


def versions(stub, service: str, **request: object) -> config_pb2.ListVersionsResponse:
    return stub.ListVersions(config_pb2.ListVersionsRequest(service=service, **request), timeout=10)


def test_every_write_is_listed_newest_first_with_its_provenance(config, service):
    before = time.time()
    set_config(config, service, {"db": {"pool": 5}, "feature": {"x": True}}, author="alice", message="initial")
    set_config(config, service, {"db": {"pool": 10}, "feature": {}}, expected=1, author="bob", message="bigger pool")
    set_config(config, service, {"debug": True}, environment="dev", author="carol")
    listed = versions(config, service).versions
    assert [(v.version, v.environment, v.author) for v in listed] == [
        (3, "dev", "carol"),
        (2, "", "bob"),
        (1, "", "alice"),
    ]
    assert listed[1].message == "bigger pool"
    assert listed[1].change_summary == "set db.pool=10; removed feature.x"
    assert listed[0].change_summary == "set debug=true"
    assert all(before - 1 <= v.created_at.seconds <= time.time() + 1 for v in listed)


def test_versions_can_be_filtered_by_environment_and_paged(config, service):
    for i in range(5):
        set_config(config, service, {"i": i}, expected=0 if i == 0 else 2 * i - 1)
        set_config(config, service, {"i": i}, environment="prod", expected=0 if i == 0 else 2 * i)
    first = versions(config, service, environment="prod", page_size=2)
    assert [v.version for v in first.versions] == [10, 8] and first.next_page_token
    second = versions(config, service, environment="prod", page_size=2, page_token=first.next_page_token)
    third = versions(config, service, environment="prod", page_size=2, page_token=second.next_page_token)
    assert [v.version for v in second.versions] == [6, 4]
    assert [v.version for v in third.versions] == [2] and not third.next_page_token
    with pytest.raises(grpc.RpcError) as failure:
        versions(config, service, page_token="not-a-token")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_any_version_can_be_read_back_as_written(config, service):
    set_config(config, service, {"a": 1, "secret": {"$secret": "svc/key"}}, author="alice", message="one")
    set_config(config, service, {"a": 2}, expected=1)
    old = config.GetVersion(config_pb2.GetVersionRequest(service=service, version=1), timeout=5)
    assert content_of(old.document) == {"a": 1, "secret": {"$secret": "svc/key"}}
    assert (old.document.version, old.document.author, old.info.message) == (1, "alice", "one")
    with pytest.raises(grpc.RpcError) as failure:
        config.GetVersion(config_pb2.GetVersionRequest(service=service, version=99), timeout=5)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_rollback_writes_a_new_version_equal_to_the_old_one(config, service):
    set_config(config, service, {"pool": 5}, environment="prod")
    set_config(config, service, {"pool": 500}, environment="prod", expected=1, message="oops")
    rolled = config.Rollback(
        config_pb2.RollbackRequest(service=service, environment="prod", to_version=1, expected_version=2, author="ops"),
        timeout=10,
    ).document
    assert (rolled.version, content_of(rolled)) == (3, {"pool": 5})
    assert content_of(get_config(config, service, "prod").document) == {"pool": 5}
    newest, *rest = versions(config, service).versions
    assert (newest.version, newest.rolled_back_from, newest.author) == (3, 1, "ops")
    assert newest.message == "rollback to version 1" and newest.change_summary == "set pool=5"
    assert [v.version for v in rest] == [2, 1]  # the audit trail stays whole


def test_rollback_checks_the_expected_version_and_the_layer(config, service):
    set_config(config, service, {"pool": 5}, environment="prod")
    set_config(config, service, {"pool": 6}, environment="dev")
    set_config(config, service, {"pool": 7}, environment="prod", expected=1)
    for request, code in (
        (dict(environment="prod", to_version=1, expected_version=1), grpc.StatusCode.ABORTED),
        (dict(environment="prod", to_version=2, expected_version=3), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(environment="prod", to_version=42, expected_version=3), grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.RpcError) as failure:
            config.Rollback(config_pb2.RollbackRequest(service=service, **request), timeout=10)
        assert failure.value.code() == code, request
    assert get_config(config, service, "prod").document.version == 3


@pytest.fixture(scope="module")
def short_history(consul, tmp_path_factory) -> Iterator[config_pb2_grpc.ConfigServiceStub]:
    """A control plane keeping three versions of each service's history."""
    process = ControlPlaneProcess(consul.http_addr, log_path=tmp_path_factory.mktemp("history") / "cp.log",
                                  extra_args=["--config-history", "3"]).start()
    with process.channel() as channel:
        yield config_pb2_grpc.ConfigServiceStub(channel)
    process.kill()


def test_history_keeps_the_latest_versions_and_older_ones_are_gone_from_consul(short_history, consul, service):
    for n in range(5):
        set_config(short_history, service, {"n": n}, expected=n)
    listed = [v.version for v in versions(short_history, service).versions]
    with pytest.raises(grpc.RpcError) as gone:
        short_history.Rollback(config_pb2.RollbackRequest(service=service, to_version=2, expected_version=5),
                               timeout=10)
    rolled = short_history.Rollback(config_pb2.RollbackRequest(service=service, to_version=3, expected_version=5),
                                    timeout=10).document
    _, keys = consul_module.Consul(*consul.http_addr.split(":")).kv.get(
        f"controlplane/config/history/{service}/", keys=True)

    assert listed == [5, 4, 3]
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND and "keeps the latest 3 versions" in gone.value.details()
    assert (rolled.version, content_of(rolled)) == (6, {"n": 2})
    assert [int(key.rsplit("/", 1)[1]) for key in keys] == [4, 5, 6]  # each write removed the one 3 before it
