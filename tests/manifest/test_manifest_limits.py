"""Manifests build no more than their text holds, and input_schema is bounded before use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from donjon.manifest import ManifestError, parse_manifest, parse_stored_manifest

BASE = "name: a\nhandler: m.h\n"


def _with_schema(schema: Any) -> str:
    return BASE + "input_schema: " + json.dumps(schema) + "\n"


@pytest.mark.parametrize(
    "text",
    [
        BASE + "limits: &l {concurrency: 2}\n",
        BASE + "x: &x 1\ny: *x\n",
        BASE + "base: &b {concurrency: 2}\nlimits: {<<: *b}\n",
    ],
)
def test_anchors_and_aliases_are_refused_naming_the_line(text: str) -> None:
    """Any anchor, alias or merge key is an error that says so and where."""
    with pytest.raises(ManifestError, match=r"line \d+: YAML anchors and aliases"):
        parse_manifest(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,
        BASE + "input_schema: " + '{"a": ' * 3000 + "1" + "}" * 3000,
        BASE + "x:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
    ],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    """Thousands of nested brackets are a clear error naming the line, not a crash."""
    with pytest.raises(ManifestError, match=r"line \d+: collections nested more than 64"):
        parse_manifest(text)


def test_a_recursive_schema_is_still_allowed() -> None:
    """A $ref back into its own chain (a tree of nodes) counts once: allowed."""
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    assert parse_manifest(_with_schema(tree)).input_schema == tree


def test_a_large_enum_is_data_not_subschemas() -> None:
    """Values of enum/const do not count towards the $ref expansion bound."""
    schema = {"enum": list(range(3000))}
    assert parse_manifest(_with_schema(schema)).input_schema == schema


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "https://example.com/s.json"}, "not a local JSON pointer"),
        ({"$ref": "#/$defs/missing"}, "points at nothing"),
        ({"$dynamicRef": "#meta"}, "dynamicRef"),
        ({"properties": {"a": {"$id": "https://example.com/a", "$ref": "#/x"}}}, "top level"),
    ],
)
def test_refs_must_stay_inside_the_schema(schema: dict[str, Any], message: str) -> None:
    """Nothing is fetched: only #/json/pointer references are accepted."""
    with pytest.raises(ManifestError, match=message):
        parse_manifest(_with_schema(schema))


def test_a_stored_manifest_is_read_as_json() -> None:
    """The node re-reads what it stored with the JSON parser and validates it again."""
    m = parse_stored_manifest(
        json.dumps({"name": "a", "handler": "m.h", "input_schema": {"type": "object"}})
    )
    assert m.input_schema == {"type": "object"}
    with pytest.raises(ManifestError):
        parse_stored_manifest("{not json")


@pytest.mark.parametrize("pattern", [r"^(a)\1$", "(?=x)y", "(?<!a)b"])
def test_patterns_needing_backtracking_are_refused(pattern: str) -> None:
    """Backreferences and lookaround cannot run in linear time: refused at deploy."""
    with pytest.raises(ManifestError, match="linear time"):
        parse_manifest(_with_schema({"type": "string", "pattern": pattern}))


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    """^(a+)+$ against 'a' * 5000 + '!' is answered at once by the input validator."""
    from donjon.manifest.input_validator import input_validator

    schema = {
        "type": "object",
        "properties": {"s": {"pattern": "^(a+)+$"}},
        "patternProperties": {"^(b+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    validator = input_validator(parse_manifest(_with_schema(schema)).input_schema or {})
    errors = [
        e.message for e in validator.iter_errors({"s": "a" * 5000 + "!", "b" * 5000 + "!": 1})
    ]
    assert len(errors) == 2 and "does not match" in errors[0]
    assert "Additional properties" in errors[1]


@pytest.mark.parametrize(
    "extra",
    [
        "timeout_s: true",  # YAML 1.1 reads `yes` so too
        'timeout_s: "10"',
        "memory_mb: '128'",
        "limits: {concurrency: true}",
        "limits: {burst: '5'}",
        "retry: {attempts: true}",
        "retry: {backoff_s: true}",
        "retry: {max_age_s: '60'}",
    ],
)
def test_a_number_of_the_wrong_type_is_refused(extra: str) -> None:
    """A bool or a string where a number is expected is refused, not read as one
    (`timeout_s: true` was a timeout of 1 s, `limits: {concurrency: true}` 1)."""
    with pytest.raises(ManifestError, match=r"valid (integer|number)"):
        parse_manifest(f"name: a\nhandler: main.handler\n{extra}\n")


def test_whole_numbers_still_serve_where_a_float_is_expected() -> None:
    """`timeout_s: 5` and `backoff_s: 1` are numbers: taken."""
    m = parse_manifest("name: a\nhandler: main.handler\ntimeout_s: 5\nretry: {backoff_s: 1}\n")
    assert m.timeout_s == 5.0 and m.retry.backoff_s == 1.0
