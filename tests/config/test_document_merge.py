"""Merge rules and canonical form of config documents (pure, no network)."""

from __future__ import annotations

from controlplane.config.document import canonical_json, checksum, merge, normalize_numbers, render_path
from controlplane.config.model import Layer, ServiceState
from controlplane.config.wire import from_struct, to_struct

DELETE = {"$delete": True}


def test_override_objects_merge_key_by_key_recursively():
    base = {"db": {"host": "a", "pool": 5, "tls": {"on": False, "ca": "x"}}, "name": "svc"}
    override = {"db": {"pool": 20, "tls": {"on": True}}}
    assert merge(base, override) == {"db": {"host": "a", "pool": 20, "tls": {"on": True, "ca": "x"}}, "name": "svc"}


def test_arrays_and_scalars_are_replaced_whole_and_types_may_change():
    base = {"hosts": ["a", "b", "c"], "retries": {"max": 3}, "mode": "x"}
    override = {"hosts": ["z"], "retries": 0, "mode": {"kind": "y"}}
    assert merge(base, override) == {"hosts": ["z"], "retries": 0, "mode": {"kind": "y"}}


def test_delete_marker_removes_the_key_and_never_appears_in_the_result():
    base = {"db": {"host": "a", "debug": True}, "legacy": 1}
    override = {"db": {"debug": DELETE}, "legacy": DELETE, "absent": DELETE, "new": {"x": DELETE, "y": 1}}
    assert merge(base, override) == {"db": {"host": "a"}, "new": {"y": 1}}


def test_null_is_a_value_not_a_deletion():
    assert merge({"timeout": 30}, {"timeout": None}) == {"timeout": None}


def test_secret_references_are_leaves_replaced_whole():
    base = {"key": {"$secret": "a/b"}, "other": {"x": 1}}
    override = {"key": {"plain": "value"}, "other": {"$secret": "c/d"}}
    assert merge(base, override) == {"key": {"plain": "value"}, "other": {"$secret": "c/d"}}


def test_merge_leaves_its_inputs_unchanged():
    base = {"a": {"b": 1}}
    override = {"a": {"c": 2}}
    merge(base, override)
    assert base == {"a": {"b": 1}} and override == {"a": {"c": 2}}


def test_merged_document_takes_provenance_from_the_newest_layer():
    state = ServiceState(
        "svc",
        {
            "": Layer("", {"a": 1, "b": 1}, 3, "alice", 100.0, "defaults"),
            "prod": Layer("prod", {"b": 2}, 5, "bob", 200.0, "prod tweak"),
            "dev": Layer("dev", {"c": 3}, 1, "carol", 50.0),
        },
        head=5,
    )
    prod = state.merged("prod")
    assert prod is not None
    assert (prod.content, prod.version, prod.author, prod.message) == ({"a": 1, "b": 2}, 5, "bob", "prod tweak")
    assert prod.layer_versions == {"": 3, "prod": 5}
    dev = state.merged("dev")
    assert dev is not None and (dev.version, dev.author) == (3, "alice")
    assert state.merged("").content == {"a": 1, "b": 1}  # type: ignore[union-attr]
    assert state.merged("staging").content == {"a": 1, "b": 1}  # type: ignore[union-attr]
    assert ServiceState("svc").merged("prod") is None


def test_checksum_does_not_depend_on_key_order():
    assert checksum({"a": 1, "b": {"c": 2, "d": 3}}) == checksum({"b": {"d": 3, "c": 2}, "a": 1})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_integral_numbers_from_the_wire_stay_integers():
    content = from_struct(to_struct({"pool": 10, "ratio": 0.5, "nested": [1, 2.5, {"n": 3}]}))
    assert content == {"pool": 10, "ratio": 0.5, "nested": [1, 2.5, {"n": 3}]}
    assert isinstance(content["pool"], int) and isinstance(content["nested"][2]["n"], int)
    assert normalize_numbers(2.0**60) == 2.0**60  # beyond exact doubles: left alone


def test_paths_render_readably():
    assert render_path(["db", "pool"], "content") == "content.db.pool"
    assert render_path(["servers", 0, "port"]) == "servers[0].port"
    assert render_path(["labels", "a.b"], "content") == 'content.labels["a.b"]'
    assert render_path(["feature-x"]) == "feature-x"
