"""JSON Schemas per service: writes that violate them, and schemas the current config violates, are refused."""

from __future__ import annotations

import grpc
import pytest

from controlplane.config.wire import from_struct
from controlplane.errors import field_violations
from controlplane.v1 import config_pb2
from tests.config.conftest import content_of, get_config, set_config, set_schema, together

SCHEMA = {
    "type": "object",
    "properties": {
        "db": {
            "type": "object",
            "properties": {"pool": {"type": "integer", "minimum": 1}, "host": {"type": "string"}},
            "required": ["host"],
        },
        "mode": {"enum": ["fast", "safe"]},
    },
}


def violations_of(error: grpc.RpcError) -> dict[str, str]:
    return {v.field: v.description for v in field_violations(error)}


def test_a_write_violating_the_schema_lists_every_violation_and_writes_nothing(config, service):
    set_schema(config, service, SCHEMA)
    set_config(config, service, {"db": {"host": "h", "pool": 5}, "mode": "safe"})
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"db": {"pool": 0}, "mode": "reckless"}, expected=1)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations_of(failure.value)) == {"content.db", "content.db.pool", "content.mode"}
    assert "'host' is a required property" in violations_of(failure.value)["content.db"]
    assert content_of(get_config(config, service).document) == {"db": {"host": "h", "pool": 5}, "mode": "safe"}


def test_an_environment_layer_is_validated_merged_with_the_default(config, service):
    set_schema(config, service, SCHEMA)
    set_config(config, service, {"db": {"host": "h"}})
    set_config(config, service, {"db": {"pool": 10}}, environment="prod")  # host comes from the default
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"db": {"host": {"$delete": True}}}, environment="staging")
    assert set(violations_of(failure.value)) == {"content.db"}


def test_a_default_layer_write_that_breaks_an_environment_names_that_environment(config, service):
    set_schema(config, service, SCHEMA)
    set_config(config, service, {"db": {"host": "h", "pool": 1}})
    set_config(config, service, {"db": {"pool": 10}}, environment="prod")
    set_config(config, service, {"mode": "fast"}, environment="dev")
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"db": {"host": "h", "pool": 1}, "mode": 3}, expected=1)
    assert set(violations_of(failure.value)) == {"content.mode", "config[prod].mode"}


def test_a_schema_the_current_config_violates_is_refused_naming_each_document(config, service):
    set_config(config, service, {"db": {"host": "h", "pool": 0}})
    set_config(config, service, {"mode": "turbo"}, environment="prod")
    with pytest.raises(grpc.RpcError) as failure:
        set_schema(config, service, SCHEMA)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations_of(failure.value)) == {
        "config[default].db.pool",
        "config[prod].db.pool",
        "config[prod].mode",
    }
    with pytest.raises(grpc.RpcError) as missing:
        config.GetSchema(config_pb2.GetSchemaRequest(service=service), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_invalid_schema_is_invalid_argument(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_schema(config, service, {"type": "objekt", "properties": {"a": {"$ref": "https://example.com/s.json"}}})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "schema.type" in violations_of(failure.value)


def test_schemas_are_versioned_with_optimistic_concurrency(config, service):
    assert set_schema(config, service, SCHEMA) == 1
    with pytest.raises(grpc.RpcError) as failure:
        set_schema(config, service, {"type": "object"}, expected=0)
    assert failure.value.code() == grpc.StatusCode.ABORTED
    assert set_schema(config, service, {"type": "object"}, expected=1) == 2
    current = config.GetSchema(config_pb2.GetSchemaRequest(service=service), timeout=5)
    assert (from_struct(current.schema), current.version) == ({"type": "object"}, 2)


def test_flag_definitions_are_checked_on_write(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        set_config(config, service, {"flags": {"checkout": {"rollout": 120}}})
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations_of(failure.value)) == {"content.flags.checkout.rollout"}


def test_a_schema_and_a_config_write_racing_never_both_succeed_when_they_conflict(config, service):
    """The schema allows n <= 5, the write sets n = 10: whichever commits first, the other must be refused."""
    for round_ in range(6):
        name = f"{service}-{round_}"
        set_config(config, name, {"n": 1})
        schema, write = together(
            lambda name=name: set_schema(config, name, {"properties": {"n": {"maximum": 5}}}),
            lambda name=name: set_config(config, name, {"n": 10}, expected=1),
        )
        schema_won, write_won = schema == 1, isinstance(write, config_pb2.ConfigDocument)
        assert schema_won != write_won, (round_, schema, write)
        assert (write if schema_won else schema) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_rollback_to_content_the_current_schema_refuses_is_refused(config, service):
    set_config(config, service, {"n": 50})
    set_config(config, service, {"n": 1}, expected=1)
    set_schema(config, service, {"properties": {"n": {"maximum": 5}}})
    with pytest.raises(grpc.RpcError) as failure:
        config.Rollback(config_pb2.RollbackRequest(service=service, to_version=1, expected_version=2), timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations_of(failure.value)) == {"content.n"}
