"""Generated schemas and documents: checking a schema, then a document against it, answers a list of field
violations whatever a client wrote (references anywhere, patterns, keywords of every draft), never an
exception that would reach the caller as UNKNOWN.

`make fuzz` runs FUZZ_EXAMPLES of each (at least the 300 `make test` runs).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.config.schema import check_schema, violations
from controlplane.errors import FieldViolation
from tests.fuzz.requests import strings

EXAMPLES = max(300, int(os.environ.get("FUZZ_EXAMPLES", "0")))
pytestmark = [pytest.mark.timeout(120 + EXAMPLES * 0.2),
              pytest.mark.filterwarnings("ignore:Generating overly large repr")]
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

DRAFTS = ["https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-07/schema#",
          "http://json-schema.org/draft-04/schema#", "https://example.com/not-a-draft"]
TYPES = ["object", "array", "string", "integer", "number", "boolean", "null", "objekt"]
INDEXES = ["0", "1", "3", "9" * 12, "1" * 5000, "²", "٣", "-1", "01", ""]
KEYWORDS = ["properties", "items", "allOf", "anyOf", "oneOf", "$defs", "definitions", "not", "prefixItems"]


def _pointer() -> st.SearchStrategy[str]:
    token = st.one_of(st.sampled_from(KEYWORDS), st.sampled_from(INDEXES), strings)
    return st.one_of(
        st.sampled_from(["#", "#/", "#/$defs/a", "#/allOf/0", "#/properties/a", "#a", "http://127.0.0.1:9/x"]),
        st.lists(token, min_size=1, max_size=5).map(lambda parts: "#/" + "/".join(parts)),
        st.builds(lambda key, index: f"#/{key}/{index}", st.sampled_from(["allOf", "anyOf", "oneOf", "prefixItems"]),
                  st.sampled_from(INDEXES)),
        strings,
    )


def _scalar_keywords() -> st.SearchStrategy[dict[str, Any]]:
    """Keywords with values a valid schema may have (three times in four), or with anything."""
    valid = st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(TYPES[:-1]), "$ref": _pointer(), "pattern": st.sampled_from(["^a+$", "(a|aa)*c"]),
        "minimum": st.integers(-10, 10), "maxLength": st.integers(0, 10), "enum": st.lists(st.integers(), max_size=3),
        "required": st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
        "format": st.sampled_from(["email", "ipv4", "date-time", "regex", "no-such-format"]),
    })
    hostile = st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES), max_size=3),
        "$ref": _pointer(),
        "pattern": st.sampled_from(["(?<=a)b", "\\1", "[", "^(a+)+$"]) | strings,
        "minimum": st.floats(allow_nan=False) | strings,
        "maxLength": st.integers(-1, 10) | strings,
        "enum": st.lists(st.integers() | strings, max_size=3),
        "required": st.lists(strings, max_size=3) | strings,
        "$anchor": strings, "$id": strings, "$dynamicRef": _pointer(),
    })
    return st.integers(0, 3).flatmap(lambda n: valid if n else hostile)


schemas = st.recursive(
    _scalar_keywords(),
    lambda inner: st.one_of(
        st.builds(lambda base, props: {**base, "properties": props}, _scalar_keywords(),
                  st.dictionaries(st.sampled_from(["a", "b", "c"]) | strings, inner, max_size=3)),
        st.builds(lambda base, subs, key: {**base, key: subs}, _scalar_keywords(), st.lists(inner, max_size=4),
                  st.sampled_from(["allOf", "anyOf", "oneOf", "prefixItems"])),
        st.builds(lambda base, defs: {**base, "$defs": defs}, _scalar_keywords(),
                  st.dictionaries(st.sampled_from(["a", "b"]) | strings, inner, max_size=2)),
        st.builds(lambda base, item: {**base, "items": item, "not": item}, _scalar_keywords(), inner),
    ),
    max_leaves=12,
).flatmap(lambda schema: st.sampled_from([None, *DRAFTS]).map(
    lambda draft: schema if draft is None else {"$schema": draft, **schema}))

documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]) | strings, inner,
                                                              max_size=3),
    max_leaves=10,
)


def _all_violations(found: Any) -> bool:
    return isinstance(found, list) and all(isinstance(v, FieldViolation) and v.description for v in found)


@SETTINGS
@given(schema=schemas)
def test_checking_any_schema_answers_violations(schema: dict[str, Any]) -> None:
    assert _all_violations(check_schema(schema))


@SETTINGS
@given(schema=schemas, document=documents)
def test_a_schema_that_passes_its_check_validates_any_document_with_violations(schema: dict[str, Any],
                                                                               document: Any) -> None:
    if check_schema(schema):
        return  # refused: never stored, never used to validate
    assert _all_violations(violations(schema, document))
