"""A large event's check in the child (gateway/large_events.py's `refusal`) decides as the
loop's does (access.parse_json's parse, events.validate): the same refusals, the same words."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest

from donjon import boundedjson
from donjon.gateway.errors import InvalidInput
from donjon.gateway.events import validate
from donjon.gateway.large_events import ON_LOOP_BYTES, PAST_LOOP, Refusal, refusal
from donjon.manifest.input_validator import input_validator

SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
}


def _on_loop(event: bytes, schema: dict[str, Any] | None) -> Refusal | None:
    """What the loop decides of `event`, said as `refusal` says it."""
    deployed = SimpleNamespace(
        name="counts", validator=None if schema is None else input_validator(schema)
    )
    try:
        validate(boundedjson.loads(event, finite=schema is not None), cast(Any, deployed))
    except boundedjson.JSONTooDeep as e:  # (an Error, not a ValueError)
        return Refusal("deep", e.message, e.hint)
    except InvalidInput as e:
        return Refusal("schema", e.message, e.hint, e.field, e.rule)
    except ValueError as e:
        return Refusal("json", str(e))
    return None


@pytest.mark.parametrize(
    "event",
    [
        b'{"items": [1, 2, 3]}',
        b'{"items": [1, "x", 3]}',
        b'{"other": 1}',
        b'{"items": [1, NaN]}',
        b'{"items": [1e999]}',
        b'{"items": [1,',
        b"[" * 200 + b"]" * 200,
        b"\xff\xfe",
    ],
    ids=["valid", "wrong-item", "missing", "nan", "infinite", "cut", "deep", "not-utf8"],
)
@pytest.mark.parametrize("schema", [SCHEMA, None], ids=["schema", "no-schema"])
def test_the_child_decides_as_the_loop_does(event: bytes, schema: dict[str, Any] | None) -> None:
    """Each event, with and without a schema: the same outcome, message, field and rule."""
    shown = None if schema is None else json.dumps(schema)
    assert refusal(event, shown, "counts") == _on_loop(event, schema)


def test_past_loop_is_the_size_bound() -> None:
    """An event is taken to the child exactly when it is past ON_LOOP_BYTES."""
    assert not (b"x" * ON_LOOP_BYTES)[PAST_LOOP]
    assert (b"x" * (ON_LOOP_BYTES + 1))[PAST_LOOP]


def test_errors_at_one_path_are_named_in_the_schemas_order() -> None:
    """Two keywords failing at one field: the child names the one the loop names, the
    first in the schema's own order (not its keys sorted)."""
    schema = {"properties": {"s": {"pattern": "^a", "maxLength": 2}}}
    found = refusal(b'{"s": "bbb"}', json.dumps(schema), "counts")
    assert found == _on_loop(b'{"s": "bbb"}', schema)
    assert found is not None and found.rule == "pattern"
