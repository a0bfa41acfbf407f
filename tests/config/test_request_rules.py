"""Checks on requests and schemas that need no network: names, content shape, sizes, JSON Schema."""

from __future__ import annotations

import pytest

from controlplane.config.schema import check_schema, violations
from controlplane.config.secrets import EnvSecretProvider, MappingSecretProvider, references, resolve
from controlplane.config.validation import check_content, check_environment
from controlplane.errors import PreconditionError

SCHEMA = {
    "type": "object",
    "properties": {
        "db": {
            "type": "object",
            "properties": {"pool": {"type": "integer", "minimum": 1}, "password": {"type": "string", "minLength": 8}},
            "required": ["pool"],
        },
        "servers": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
    },
}


def fields(problems):
    return sorted(p.field for p in problems)


def test_environment_names_follow_the_service_name_rule_and_default_is_reserved():
    assert check_environment("") == [] and check_environment("prod-eu") == []
    assert fields(check_environment("Prod")) == ["environment"]
    assert "reserved" in check_environment("default")[0].description
    assert fields(check_environment("a/b")) == ["environment"]


def test_every_schema_violation_is_listed_with_its_path():
    found = violations(SCHEMA, {"db": {"pool": 0, "password": "x"}, "servers": [{"port": "80"}]})
    assert fields(found) == ["content.db.password", "content.db.pool", "content.servers[0].port"]
    assert any("minimum" in p.description or "less than" in p.description for p in found)


def test_missing_required_keys_are_reported_at_their_parent():
    assert fields(violations(SCHEMA, {"db": {}})) == ["content.db"]


def test_a_secret_reference_validates_as_a_string_without_its_value_constraints():
    assert violations(SCHEMA, {"db": {"pool": 1, "password": {"$secret": "db/password"}}}) == []
    wrong = violations(SCHEMA, {"db": {"pool": {"$secret": "db/pool"}}})
    assert fields(wrong) == ["content.db.pool"] and "secret reference" in wrong[0].description


def test_an_invalid_schema_is_reported_with_paths():
    problems = check_schema({"type": "objekt", "properties": {"x": {"minimum": "one"}}})
    assert fields(problems) == ["schema.properties.x.minimum", "schema.type"]


def test_schema_references_must_stay_inside_the_schema():
    remote = check_schema({"properties": {"a": {"$ref": "http://127.0.0.1:9/evil.json"}}})
    assert fields(remote) == ["schema.properties.a.$ref"] and "within the schema" in remote[0].description
    dangling = check_schema({"properties": {"a": {"$ref": "#/$defs/missing"}}})
    assert "points at nothing" in dangling[0].description
    assert check_schema({"$defs": {"p": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/p"}}}) == []


@pytest.mark.parametrize("index", ["1" * 5000, "²", "٣", "-0", "01x"])
def test_a_reference_into_a_list_by_anything_but_a_short_decimal_index_points_at_nothing(index: str) -> None:
    problems = check_schema({"allOf": [{"type": "object"}] * 4, "properties": {"a": {"$ref": f"#/allOf/{index}"}}})
    assert fields(problems) == ["schema.properties.a.$ref"] and "points at nothing" in problems[0].description
    assert check_schema({"allOf": [{"type": "object"}] * 4, "properties": {"a": {"$ref": "#/allOf/3"}}}) == []


def test_content_checks_report_markers_non_finite_numbers_depth_and_size():
    assert fields(check_content({"x": float("nan"), "y": [float("inf")]}, max_bytes=1000, default_layer=False)) == [
        "content.x",
        "content.y[0]",
    ]
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    assert "deep" in check_content(deep, max_bytes=10_000, default_layer=False)[0].description
    too_big = check_content({"blob": "x" * 2000}, max_bytes=1000, default_layer=False)
    assert "at most 1000 bytes" in too_big[0].description
    markers = check_content(
        {"a": {"$delete": True, "b": 1}, "c": {"$secret": 7}, "d": [{"$delete": True}], "e": {"$secret": "bad ref"}},
        max_bytes=1000,
        default_layer=False,
    )
    assert fields(markers) == ["content.a", "content.c", "content.d[0]", "content.e"]
    assert fields(check_content({"a": {"$delete": True}}, max_bytes=1000, default_layer=True)) == ["content.a"]


def test_env_secret_provider_maps_references_to_variable_names():
    provider = EnvSecretProvider(environ={"CONTROLPLANE_SECRET_PAYMENT_API_KEY": "s3cret"})
    assert provider.variable("payment/api-key") == "CONTROLPLANE_SECRET_PAYMENT_API_KEY"
    assert provider.get("payment/api-key") == "s3cret" and provider.get("other") is None


def test_resolving_replaces_every_reference_and_leaves_the_input_unchanged():
    document = {"a": {"$secret": "x"}, "list": [{"$secret": "y"}, 1]}
    assert references(document) == [(("a",), "x"), (("list", 0), "y")]
    resolved = resolve(document, MappingSecretProvider({"x": "1", "y": "2"}))
    assert resolved == {"a": "1", "list": ["2", 1]} and document["a"] == {"$secret": "x"}


def test_unresolvable_secrets_are_named_by_reference_never_by_value():
    provider = MappingSecretProvider({"known": "hunter2-value"})
    try:
        resolve({"ok": {"$secret": "known"}, "bad": {"$secret": "payment/missing"}}, provider)
    except PreconditionError as error:
        assert "payment/missing" in error.message and "content.bad" in error.message
        assert "hunter2-value" not in error.message
    else:
        raise AssertionError("expected PreconditionError")


def test_a_failing_provider_counts_as_unresolvable_without_quoting_its_error():
    class Broken:
        def get(self, reference: str) -> str | None:
            raise RuntimeError("leaked-value-in-exception")

    try:
        resolve({"k": {"$secret": "a/b"}}, Broken())
    except PreconditionError as error:
        assert "a/b" in error.message and "leaked" not in error.message
    else:
        raise AssertionError("expected PreconditionError")


def test_schemas_whose_references_loop_without_end_are_refused():
    for looping in (
        {"$ref": "#"},
        {"allOf": [{"$ref": "#"}]},
        {"$defs": {"x": {"$ref": "#/$defs/x"}}, "properties": {"a": {"$ref": "#/$defs/x"}}},
    ):
        assert fields(check_schema(looping)) == ["schema"], looping
    linked_list = {"$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"}
    assert check_schema(linked_list) == []
    assert violations(linked_list, {"next": {"next": {}}}) == []
