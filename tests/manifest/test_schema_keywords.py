"""The keywords redone in linear time (schema_keywords.py) decide as jsonschema does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from donjon.manifest.input_validator import input_validator

SCHEMAS: list[dict[str, Any]] = [
    {"uniqueItems": True},
    {"type": "array", "items": {"type": "number"}, "uniqueItems": True},
    {"prefixItems": [{"type": "integer"}], "unevaluatedItems": False},
    {"anyOf": [{"items": {"type": "integer"}}, {"prefixItems": [{}]}], "unevaluatedItems": False},
    {"contains": {"type": "string"}, "unevaluatedItems": {"type": "boolean"}},
    {"properties": {"a": {}}, "unevaluatedProperties": False},
    {"additionalProperties": {"type": "integer"}, "unevaluatedProperties": False},
    {"anyOf": [{"properties": {"a": {"type": "integer"}}}],
     "unevaluatedProperties": {"type": "null"}},
    {"multipleOf": 0.5},
    {"multipleOf": 3},
    {"anyOf": [{"type": "string"}, {"items": {"type": "integer"}}]},
    {"oneOf": [{"type": "integer"}, {"minimum": 0}, {"type": "array", "maxItems": 1}]},
]  # fmt: skip

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, 1.5, -0.5, 2**70, 10**400])
    | st.sampled_from(["", "a", "b"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=10,
)


@pytest.mark.parametrize("schema", SCHEMAS)
@settings(max_examples=150, deadline=None)
@given(instance=JSON)
def test_the_linear_keywords_decide_as_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    """Valid for Donjon's validator exactly when valid for jsonschema's (where jsonschema
    answers: it raises for an integer past a float against a fractional multipleOf)."""
    try:
        expected = Draft202012Validator(schema).is_valid(instance)
    except OverflowError:
        expected = True  # only an integer past a float raises: a multiple of 0.5
    assert input_validator(schema).is_valid(instance) == expected


def test_unique_items_tells_json_values_apart_as_json_schema_does() -> None:
    """1 equals 1.0 and objects compare unordered; true is not 1, nor [true] [1]."""
    unique = input_validator({"uniqueItems": True})
    assert not unique.is_valid([1, 1.0])
    assert not unique.is_valid([{"a": 1, "b": [2]}, {"b": [2], "a": 1.0}])
    assert unique.is_valid([True, 1, [True], [1], False, 0, None, "", [], {}])


@pytest.mark.parametrize("keyword", ["anyOf", "oneOf"])
def test_a_failed_branch_keeps_a_few_of_its_errors(keyword: str) -> None:
    """A branch of `anyOf` / `oneOf` that fails on each of 10,000 items keeps its first
    few errors as the refusal's context, not one per item (jsonschema kept them all)."""
    schema = {keyword: [{"items": {"type": "integer"}}, {"type": "string"}]}
    (error,) = input_validator(schema).iter_errors(["a"] * 10_000)
    assert 1 <= len(error.context) <= 9  # the first branch's first 8, the second's 1
