"""Bounds on a manifest's `input_schema`, checked before jsonschema ever sees it.

A schema is code the gateway runs on every call (and the deploy runs once, checking
it against the 2020-12 meta-schema). A few hundred bytes can make either exponential:
YAML aliases (refused by the loader) or `$ref`s that fan out to each other. So:

- its JSON size is at most `MAX_SCHEMA_BYTES` and its nesting at most `MAX_SCHEMA_DEPTH`;
- `$ref` may only point inside the schema (``#`` or ``#/json/pointer``): nothing is
  fetched, and `$dynamicRef` is refused;
- following every `$ref` (a reference back into its own chain counts once: recursive
  schemas stay allowed), the schema expands to at most `MAX_EXPANDED_SUBSCHEMAS`
  subschemas, so the work of one validation is bounded by the event's size times that.

Each walk here is iterative and stops as soon as a bound is passed, whatever the input
(shared sub-objects included).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

__all__ = [
    "MAX_EXPANDED_SUBSCHEMAS",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "check_expansion",
    "check_size",
]

MAX_SCHEMA_BYTES = 16 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_EXPANDED_SUBSCHEMAS = 5000
#: Keywords whose values are data (or the reference itself), not subschemas to expand.
_DATA_KEYWORDS = frozenset({"$ref", "enum", "const", "default", "examples"})


def _scalar_size(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode()) + 2
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError):
        return 8


def check_size(schema: Any) -> None:
    """ValueError if `schema` is larger than MAX_SCHEMA_BYTES as JSON or deeper than
    MAX_SCHEMA_DEPTH; stops walking as soon as it is."""
    size = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise ValueError(f"input_schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
        if isinstance(node, dict):
            size += 2
            for key, value in node.items():
                size += _scalar_size(str(key)) + 2
                stack.append((value, depth + 1))
        elif isinstance(node, list | tuple):
            size += 2
            stack.extend((item, depth + 1) for item in node)
            size += len(node)
        else:
            size += _scalar_size(node)
        if size > MAX_SCHEMA_BYTES:
            raise ValueError(f"input_schema is larger than {MAX_SCHEMA_BYTES // 1024} KiB as JSON")


def _resolve(root: Any, ref: str) -> Any:
    """The subschema a local `$ref` names; ValueError for any other kind of reference."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise ValueError(
            f"input_schema: $ref {ref[:80]!r} is not a local JSON pointer "
            "(#/...); nothing outside the schema is fetched"
        )
    node = root
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"input_schema: $ref {ref[:80]!r} points at nothing")
    return node


def check_expansion(schema: Any) -> None:
    """ValueError if following `schema`'s $refs passes MAX_EXPANDED_SUBSCHEMAS, or one
    of them is not a local JSON pointer."""
    seen = 0
    stack: list[tuple[Any, tuple[str, ...]]] = [(schema, ())]
    while stack:
        node, chain = stack.pop()
        seen += 1
        if seen > MAX_EXPANDED_SUBSCHEMAS:
            raise ValueError(
                f"input_schema expands to more than {MAX_EXPANDED_SUBSCHEMAS} subschemas "
                "through its $refs; validating an event against it could take unbounded time"
            )
        if isinstance(node, dict):
            if "$dynamicRef" in node or "$recursiveRef" in node:
                raise ValueError("input_schema: $dynamicRef is not supported; use $ref")
            if "$id" in node and node is not schema:
                # It would change what a "#/..." below it points at.
                raise ValueError("input_schema: $id is allowed only at the top level")
            ref = node.get("$ref")
            if isinstance(ref, str) and ref not in chain:
                stack.append((_resolve(schema, ref), (*chain, ref)))
            stack.extend((v, chain) for k, v in node.items() if k not in _DATA_KEYWORDS)
        elif isinstance(node, list | tuple):
            stack.extend((item, chain) for item in node)
