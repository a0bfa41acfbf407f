"""History change summaries (pure)."""

from __future__ import annotations

from controlplane.config.diff import changes, summarize


def test_summary_lists_set_and_removed_leaves_in_path_order():
    before = {"db": {"pool": 5, "host": "a"}, "feature": {"x": True}}
    after = {"db": {"pool": 10, "host": "a"}, "feature": {}}
    assert summarize(before, after) == "set db.pool=10; removed feature.x"


def test_new_objects_are_summarized_by_their_leaves():
    assert summarize({}, {"db": {"host": "h", "port": 5432}}) == 'set db.host="h"; set db.port=5432'


def test_arrays_are_compared_whole():
    assert summarize({"hosts": ["a", "b"]}, {"hosts": ["a", "c"]}) == 'set hosts=["a","c"]'


def test_a_type_change_with_equal_python_value_is_a_change():
    assert summarize({"flag": 1}, {"flag": True}) == "set flag=true"


def test_identical_layers_summarize_as_no_change():
    assert summarize({"a": {"b": 1}}, {"a": {"b": 1}}) == "no change"
    assert changes({}, {}) == []


def test_secret_references_show_only_the_reference_name():
    summary = summarize({}, {"api": {"key": {"$secret": "payment/api-key"}}})
    assert summary == "set api.key=$secret(payment/api-key)"


def test_deletion_markers_are_named_as_such():
    assert summarize({"a": 1}, {"a": {"$delete": True}}) == "set a=$delete"


def test_long_values_and_long_summaries_are_shortened():
    one = summarize({}, {"text": "x" * 500})
    assert len(one) < 60 and one.endswith("…")
    many = summarize({}, {f"key{i:03}": i for i in range(500)}, limit=200)
    assert len(many) < 240 and many.endswith("more")
