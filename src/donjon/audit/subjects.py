"""Which functions an audit record is about: what a read scoped to some functions may show.

A role allowed `audit:read` (or `alert:read`) on some functions only (`billing-*`)
reads the records about those functions and nothing else (gateway/read_scope.py).
A record is about the functions it names as

- its target: `NAME@VERSION`, `function:NAME`, or a bare `NAME` for the actions
  that act on a function (`function.*`, `invocation.*`, `policy.*`, `egress.*`,
  and the refusals of a call: `authz.denied`, `throttle.denied`);
- its actor: `function:NAME` (a function calling another, its egress);
- `detail.function`.

Every name must be a function's name (a request path, a secret's name or a node's
target is none). A record that names no function (keys, roles, issuers, secrets,
the node, a refusal of a request path) is node-wide: only a reader of every
function sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from donjon.manifest.model import NAME_RE

__all__ = ["functions_named"]

_NAME = re.compile(NAME_RE)
#: The actions whose bare target is a function's name (any other's may be a secret's).
_ON_A_FUNCTION = (
    "function.",
    "invocation.",
    "policy.",
    "egress.",
    "authz.denied",
    "throttle.denied",
)


def functions_named(record: Mapping[str, Any]) -> frozenset[str]:
    """The functions `record` is about (empty: a node-wide record)."""
    action = str(record.get("action", ""))
    actor, target = str(record.get("actor", "")), str(record.get("target", ""))
    raw = record.get("detail")
    detail: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    names: set[str] = set()
    kind, sep, rest = target.partition(":")
    if sep:
        if kind == "function":
            names.add(rest)
    elif action.startswith(_ON_A_FUNCTION):
        names.add(target.partition("@")[0])
    if actor.startswith("function:"):
        names.add(actor.removeprefix("function:"))
    function = detail.get("function")
    if isinstance(function, str):
        names.add(function)
    # A name that is no function's (a path, a garbage target) makes the record
    # node-wide rather than being dropped: it could name anything.
    if not all(_NAME.fullmatch(n) for n in names):
        return frozenset()
    return frozenset(names)
