"""JSON pointers for the field an input_schema refuses (RFC 6901), and how much of the
schema's errors a refusal makes."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from donjon.gateway.errors import InvalidInput
from donjon.gateway.events import json_pointer, validate
from donjon.manifest.input_validator import input_validator


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ([], ""),
        (["url"], "/url"),
        (["opts", 0, "depth"], "/opts/0/depth"),
        (["a/b", "m~n"], "/a~1b/m~0n"),
    ],
)
def test_paths_become_json_pointers(path: list[object], pointer: str) -> None:
    """Keys and indexes are joined with '/', with '~' and '/' escaped as ~0 and ~1."""
    assert json_pointer(path) == pointer


def test_a_refusal_makes_a_few_errors_not_one_per_wrong_item() -> None:
    """An event of 100,000 wrong items against `items: {type: integer}`: the refusal names
    the first wrong item by path and asks the validator for a few errors, not all of them
    (each is a ValidationError: 200,000 of them were ~640 MB and seconds on the loop)."""
    validator = input_validator(
        {"type": "object", "properties": {"tags": {"items": {"type": "integer"}}}}
    )
    made = 0

    def counted(instance: Any) -> Iterator[Any]:
        nonlocal made
        for error in validator.iter_errors(instance):
            made += 1
            yield error

    deployed = SimpleNamespace(
        name="tags",
        validator=SimpleNamespace(iter_errors=counted, schema=validator.schema, quick=None),
    )
    with pytest.raises(InvalidInput) as refused:
        validate({"tags": ["a"] * 100_000}, cast(Any, deployed))
    assert "/tags/0" in str(refused.value)
    assert 1 <= made <= 32


@pytest.mark.parametrize(
    ("schema", "event", "summary"),
    [
        (
            {"properties": {"card": {"type": "integer"}}},
            {"card": "VALUE-4111111111111111"},
            "input does not match the function's schema at /card (type)",
        ),
        (
            {"properties": {"key": {"pattern": "^ok-"}}},
            {"key": "VALUE-jane.doe@example.com"},
            "input does not match the function's schema at /key (pattern)",
        ),
        (
            {"type": "array"},
            {"VALUE": 1},
            "input does not match the function's schema at (root) (type)",
        ),
    ],
)
def test_a_refusals_summary_names_the_field_and_rule_never_the_value(
    schema: dict[str, Any], event: dict[str, Any], summary: str
) -> None:
    """The caller's 422 quotes the refused value; the summary (what the node logs of an
    event from a queue or a database) names the field and the failing keyword only."""
    deployed = SimpleNamespace(name="fn", validator=input_validator(schema))
    with pytest.raises(InvalidInput) as refused:
        validate(event, cast(Any, deployed))
    assert "VALUE" in refused.value.message
    assert refused.value.summary() == summary


@pytest.mark.parametrize(
    ("schema", "event", "summary"),
    [
        (
            {"additionalProperties": {"type": "integer"}},
            {"VALUE-4111111111111111": "x"},
            "input does not match the function's schema at /* (type)",
        ),
        (
            {"patternProperties": {"@": {"type": "integer"}}},
            {"VALUE-jane.doe@example.com": "x"},
            "input does not match the function's schema at /* (type)",
        ),
        (
            {
                "properties": {
                    "users": {"additionalProperties": {"properties": {"age": {"type": "integer"}}}}
                }
            },
            {"users": {"VALUE-jane.doe@example.com": {"age": "x"}}},
            "input does not match the function's schema at /users/*/age (type)",
        ),
        (
            {"properties": {"tags": {"items": {"type": "integer"}}}},
            {"tags": [1, "VALUE"]},
            "input does not match the function's schema at /tags/1 (type)",
        ),
    ],
)
def test_a_refusals_summary_names_no_key_the_sender_chose(
    schema: dict[str, Any], event: dict[str, Any], summary: str
) -> None:
    """A key the schema does not name (a map's key: an email, a card number) is the
    sender's value: the summary shows it as `*`; the caller's 422 still names it."""
    deployed = SimpleNamespace(name="fn", validator=input_validator(schema))
    with pytest.raises(InvalidInput) as refused:
        validate(event, cast(Any, deployed))
    assert "VALUE" in refused.value.message
    assert refused.value.summary() == summary
    assert "VALUE" not in (refused.value.field or "")


def _verdict(event: Any, deployed: Any) -> str:
    try:
        validate(event, deployed)
    except InvalidInput as e:
        return f"{e} {e.hint} {e.field} {e.rule}"
    return "valid"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}},
         "additionalProperties": False},
        {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}},
        {"type": "array", "items": {"type": "number", "maximum": 1.5}, "maxItems": 2},
        {"type": "object", "properties": {"a": {"enum": [1, 2]}}},
    ],
)  # fmt: skip
def test_the_quick_yes_gives_what_the_full_validator_gives(schema: dict[str, Any]) -> None:
    """`validate` answers a plainly valid event from the quick check alone; with it and
    without it, every event gets the same verdict (valid, or the same 422)."""
    validator = input_validator(schema)
    full = SimpleNamespace(iter_errors=validator._full.iter_errors, schema=schema, quick=None)
    events: list[Any] = [
        {}, {"name": "ab"}, {"name": "abcd"}, {"name": 1}, {"a": 1}, {"a": "1"}, {"a": 3},
        {"x": 1}, [], [1, 2], [1, 2, 3], [2.0], ["1"], None, "s", 1.0, {"a": True},
    ]  # fmt: skip
    for event in events:
        quick = _verdict(event, SimpleNamespace(name="f", validator=validator))
        assert quick == _verdict(event, SimpleNamespace(name="f", validator=full)), event
