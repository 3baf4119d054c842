"""The quick schema check: it only ever says "valid" where jsonschema does too."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.manifest.input_validator import _InputValidator, input_validator
from donjon.manifest.schema_check import Check, _every, compile_check

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}},
     "additionalProperties": False},
    {"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "integer",
     "minimum": 0, "exclusiveMaximum": 10}, "b": {"type": ["string", "null"], "minLength": 1}}},
    {"type": "array", "items": {"type": "number", "maximum": 1.5}, "minItems": 1, "maxItems": 3},
    {"properties": {"x": {"type": "boolean"}, "y": {"items": {"type": "object"}}}},
    {"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": -1}},
     "title": "t", "description": "d"},
    {},
]  # fmt: skip

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-20, 20)
    | st.floats(-20, 20)
    | st.sampled_from([1.0, 0.0, -0.0, float("inf"), float("nan")])
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "name", "n", "x", "y", "z"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("schema", SCHEMAS)
@settings(max_examples=150, deadline=None)
@given(instance=JSON)
def test_quick_valid_means_jsonschema_valid(schema: dict[str, Any], instance: Any) -> None:
    """Whatever the event, a "valid" from the quick check is jsonschema's verdict too."""
    check = compile_check(schema)
    assert check is not None
    if check(instance):
        assert _InputValidator(schema).is_valid(instance)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"enum": [1, 2]}}},
        {"type": "object", "patternProperties": {"^a": {}}, "additionalProperties": False},
        {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 3},
        {"type": "string", "format": "email"},
        {"anyOf": [{"type": "string"}]},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"properties": {"a": False}},
    ],
)
def test_unmodelled_keywords_go_to_jsonschema(schema: dict[str, Any]) -> None:
    """A schema with a keyword the quick check does not model is never checked by it."""
    assert compile_check(schema) is None


def test_errors_are_jsonschemas() -> None:
    """An event the quick check does not pass gets jsonschema's own errors."""
    validator = input_validator(SCHEMAS[0])
    assert list(validator.iter_errors({"name": "abc"})) == []
    errors = list(validator.iter_errors({"name": "abcd", "extra": 1}))
    assert sorted(e.message for e in errors) == sorted(
        e.message for e in _InputValidator(SCHEMAS[0]).iter_errors({"name": "abcd", "extra": 1})
    )
    assert len(errors) == 2


def test_every_answers_as_all_over_its_checks() -> None:
    """The checks of one schema joined (`_every`: none, one, two, or a loop over more) say
    what `all` over them says, for every choice of checks and values."""
    pool: list[Check] = [
        lambda v: type(v) is int,
        lambda v: v != 0,
        lambda v: v != 1,
        lambda v: type(v) is not str or len(v) < 2,
        lambda v: v is not None,
    ]
    values: list[Any] = [0, 1, 2, -1, "", "a", "ab", None, 1.5, [], {}]
    for size in range(len(pool) + 1):
        for checks in itertools.permutations(pool, size):
            joined = _every(list(checks))
            for value in values:
                assert joined(value) is all(check(value) for check in checks), (checks, value)
