"""SetConfig and GetConfig against a real Consul: layering, versions, optimistic concurrency, limits."""

from __future__ import annotations

import threading

import consul
import grpc
import pytest

from controlplane.config.document import checksum
from controlplane.config.store import history_key, history_prefix, layer_key, version_key
from controlplane.config.wire import to_struct
from controlplane.errors import field_violations
from controlplane.v1 import config_pb2
from tests.config.conftest import content_of, get_config, set_config, together


def kv(consul_agent) -> consul.Consul:
    host, port = consul_agent.http_addr.split(":")
    return consul.Consul(host=host, port=int(port))


def test_get_returns_the_default_layer_merged_with_the_environment_layer(config, service):
    set_config(config, service, {"db": {"host": "db.internal", "pool": 5}, "debug": True}, message="defaults")
    set_config(config, service, {"db": {"pool": 50}, "debug": {"$delete": True}}, environment="prod", author="ops")

    prod = get_config(config, service, "prod")
    assert content_of(prod.document) == {"db": {"host": "db.internal", "pool": 50}}
    assert (prod.document.version, prod.document.author, prod.document.environment) == (2, "ops", "prod")
    assert prod.document.checksum == checksum({"db": {"host": "db.internal", "pool": 50}})
    assert prod.document.updated_at.seconds > 0
    assert dict(prod.layer_versions) == {"": 1, "prod": 2}

    default = get_config(config, service)
    assert content_of(default.document) == {"db": {"host": "db.internal", "pool": 5}, "debug": True}
    assert (default.document.version, default.document.message) == (1, "defaults")
    # An environment without a layer of its own is served the default layer.
    assert content_of(get_config(config, service, "staging").document) == content_of(default.document)


def test_get_of_an_unconfigured_service_is_not_found(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        get_config(config, service, "prod")
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_versions_are_service_wide_and_a_layer_write_names_its_current_version(config, service):
    assert set_config(config, service, {"a": 1}).version == 1
    assert set_config(config, service, {"b": 1}, environment="dev").version == 2
    assert set_config(config, service, {"a": 2}, expected=1).version == 3
    assert set_config(config, service, {"b": 2}, environment="dev", expected=2).version == 4


def test_a_stale_expected_version_is_aborted_and_writes_nothing(config, service, consul):
    set_config(config, service, {"a": 1})
    set_config(config, service, {"a": 2}, expected=1)
    for stale in (0, 1, 7):
        with pytest.raises(grpc.RpcError) as failure:
            set_config(config, service, {"a": 99}, expected=stale)
        assert failure.value.code() == grpc.StatusCode.ABORTED
    assert content_of(get_config(config, service).document) == {"a": 2}
    _, head = kv(consul).kv.get(version_key(service))
    assert head is not None and b'"version": 2' in head["Value"]
    _, keys = kv(consul).kv.get(history_prefix(service), keys=True)
    assert len(keys) == 2


def test_expecting_a_version_of_a_layer_that_does_not_exist_is_aborted(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"a": 1}, environment="prod", expected=3)
    assert failure.value.code() == grpc.StatusCode.ABORTED
    assert "does not exist" in failure.value.details()


def test_of_two_writers_expecting_the_same_version_exactly_one_wins(config, service):
    set_config(config, service, {"counter": 0})
    for round_ in range(5):
        expected = get_config(config, service).document.version
        left, right = together(
            lambda: set_config(config, service, {"writer": "left"}, expected=expected),  # noqa: B023
            lambda: set_config(config, service, {"writer": "right"}, expected=expected),  # noqa: B023
        )
        outcomes = {"left": left, "right": right}
        won = [name for name, outcome in outcomes.items() if isinstance(outcome, config_pb2.ConfigDocument)]
        assert len(won) == 1, (round_, outcomes)
        lost = "right" if won == ["left"] else "left"
        assert outcomes[lost] == grpc.StatusCode.ABORTED
        current = get_config(config, service).document
        assert content_of(current) == {"writer": won[0]} and current.version == outcomes[won[0]].version


def test_concurrent_read_modify_write_loops_lose_no_update(config, service):
    """Writers of the same layer retry on ABORTED; a writer of another layer only adds contention."""
    set_config(config, service, {"count": 0})
    set_config(config, service, {"count": 0}, environment="dev")
    increments = 5
    aborted: list[int] = []

    def increment(environment: str) -> None:
        for _ in range(increments):
            while True:
                response = get_config(config, service, environment)
                expected = response.layer_versions[environment]
                layer = {"count": content_of(response.document)["count"] + 1}
                try:
                    set_config(config, service, layer, environment=environment, expected=expected)
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.ABORTED, error.details()
                    aborted.append(1)

    threads = [threading.Thread(target=increment, args=(env,)) for env in ("", "", "", "dev")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert content_of(get_config(config, service).document) == {"count": 3 * increments}
    assert content_of(get_config(config, service, "dev").document) == {"count": increments}
    assert get_config(config, service, "dev").document.version == 2 + 4 * increments
    assert aborted  # the writers did collide


def test_an_acknowledged_write_is_in_consul_with_its_history_entry(config, service, consul):
    document = set_config(config, service, {"a": 1}, environment="prod", message="first")
    client = kv(consul)
    _, layer = client.kv.get(layer_key(service, "prod"))
    _, entry = client.kv.get(history_key(service, document.version))
    assert layer is not None and entry is not None
    assert b'"version": 1' in layer["Value"] and b'"message": "first"' in entry["Value"]
    # Layer, counter and history entry were written by one transaction.
    _, head = client.kv.get(version_key(service))
    assert layer["ModifyIndex"] == entry["ModifyIndex"] == head["ModifyIndex"]


def test_invalid_names_are_refused_with_field_violations(config):
    with pytest.raises(grpc.RpcError) as failure:
        config.SetConfig(
            config_pb2.SetConfigRequest(service="Bad_Name", environment="Prod/1", content=to_struct({})), timeout=5
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(failure.value)} == {"service", "environment"}
    with pytest.raises(grpc.RpcError) as failure:
        config.GetConfig(config_pb2.GetConfigRequest(service="x" * 80), timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_default_is_a_reserved_environment_name(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"a": 1}, environment="default")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reserved" in field_violations(failure.value)[0].description


def test_a_layer_too_large_for_consul_is_refused_clearly_and_not_written(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"blob": "x" * (600 * 1024)})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = field_violations(failure.value)
    assert violation.field == "content" and "at most 131072 bytes" in violation.description
    with pytest.raises(grpc.RpcError) as missing:
        get_config(config, service)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_markers_in_the_wrong_place_are_refused_with_their_paths(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"a": {"$delete": True}, "b": {"$secret": "no spaces allowed"}})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(failure.value)} == {"content.a", "content.b"}


def test_non_finite_numbers_are_refused(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"ratio": float("nan")})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failure.value)[0].field == "content.ratio"


def test_a_document_nested_too_deep_to_decode_is_invalid_argument_not_unknown(channel, service):
    nested: dict = {}
    node = nested
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    raw_struct = to_struct(nested).SerializeToString()  # the Python client itself refuses to build it
    head = config_pb2.SetConfigRequest(service=service).SerializeToString()
    raw = head + b"\x1a" + _varint(len(raw_struct)) + raw_struct  # field 3 (content), length-delimited
    call = channel.unary_unary("/controlplane.v1.ConfigService/SetConfig")
    with pytest.raises(grpc.RpcError) as failure:
        call(raw, timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nest" in failure.value.details()


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])
