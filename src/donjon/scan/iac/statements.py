"""IAM policy documents (identity and resource policies) read into `Statement`s.

Shared by the loaders: each resolves its template first (CloudFormation intrinsics,
Serverless variables, Terraform expressions) into plain data, then hands a policy
document, a list of statements or one statement here. What this module accepts:

- mappings, sequences, strings, numbers and booleans (numbers and booleans become
  strings, as IAM reads them);
- `Unresolved` anywhere a value may stand: it lands in the statement's
  `unresolved`, never silently dropped;
- any other object (an intrinsic the loader left as written, for instance) is
  unresolved too, shown as written;
- a mapping may carry an int attribute ``line`` (its line in the template) and a
  bool attribute ``conditional`` (it holds under a condition only); the loaders'
  resolved nodes do. Read with `getattr`, so plain dicts work too.

Every field takes IAM's string-or-list forms. Principals are normalised:
``"*"`` and ``{"AWS": "*"}`` are ``*``; an AWS account or ARN stays as written;
``Service`` principals become ``service:<name>``, ``Federated`` ones
``federated:<name>`` and ``CanonicalUser`` ones ``canonical:<id>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from donjon.scan.iac.model import Condition, Effect, Statement, Unresolved

__all__ = ["line_of", "parse_policy", "parse_statement", "strings"]

_PRINCIPAL_PREFIX = {
    "Service": "service:",
    "Federated": "federated:",
    "CanonicalUser": "canonical:",
}


def line_of(node: object, default: int = 0) -> int:
    """The template line a resolved node carries (`default` when it carries none)."""
    line = getattr(node, "line", None)
    return line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else default


def _conditional(node: object) -> bool:
    return getattr(node, "conditional", False) is True


def _written(value: object) -> str:
    """A value the parser cannot use, shown as written."""
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def strings(value: object, field: str) -> tuple[tuple[str, ...], tuple[Unresolved, ...]]:
    """The strings of a string-or-list field, and what in it is not a known string."""
    known: list[str] = []
    unknown: list[Unresolved] = []
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    for item in items:
        if item is None:
            continue
        if isinstance(item, str):
            known.append(item)
        elif isinstance(item, bool):
            known.append("true" if item else "false")
        elif isinstance(item, int | float):
            known.append(str(item))
        elif isinstance(item, Unresolved):
            unknown.append(item)
        else:
            unknown.append(Unresolved(_written(item), f"{field} is not a string"))
    return tuple(known), tuple(unknown)


def _principals(value: object) -> tuple[tuple[str, ...], tuple[Unresolved, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, Mapping):
        known, unknown = strings(value, "Principal")
        return known, unknown
    out: list[str] = []
    missing: list[Unresolved] = []
    for kind, names in value.items():
        known, unknown = strings(names, f"Principal.{kind}")
        missing.extend(unknown)
        prefix = _PRINCIPAL_PREFIX.get(str(kind), "")
        out.extend(prefix + name for name in known)
    return tuple(out), tuple(missing)


def _conditions(value: object) -> tuple[tuple[Condition, ...], tuple[Unresolved, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, Mapping):
        return (), (Unresolved(_written(value), "Condition is not a mapping"),)
    out: list[Condition] = []
    missing: list[Unresolved] = []
    for operator, tests in value.items():
        if not isinstance(tests, Mapping):
            missing.append(Unresolved(_written(tests), f"Condition {operator} is not a mapping"))
            continue
        for key, values in tests.items():
            known, unknown = strings(values, f"Condition {operator} {key}")
            missing.extend(unknown)
            out.append(Condition(str(operator), str(key), known))
    return tuple(out), tuple(missing)


def _effect(value: object) -> tuple[Effect, tuple[Unresolved, ...]]:
    """The effect; anything but a known ``Deny`` counts as Allow (the worse reading)."""
    if value == "Deny":
        return Effect.DENY, ()
    if value == "Allow":
        return Effect.ALLOW, ()
    if isinstance(value, Unresolved):
        return Effect.ALLOW, (value,)
    return Effect.ALLOW, (Unresolved(_written(value), "Effect is not Allow or Deny"),)


def parse_statement(raw: object, line: int = 0, *, conditional: bool = False) -> Statement:
    """One statement. Something that is not a mapping is a statement whose whole meaning
    is unresolved (an Allow, the worse reading)."""
    line = line_of(raw, line)
    conditional = conditional or _conditional(raw)
    if isinstance(raw, Unresolved):
        return Statement(Effect.ALLOW, line, conditional=conditional, unresolved=(raw,))
    if not isinstance(raw, Mapping):
        why = Unresolved(_written(raw), "statement is not a mapping")
        return Statement(Effect.ALLOW, line, conditional=conditional, unresolved=(why,))
    effect, missing = _effect(raw.get("Effect"))
    unresolved = list(missing)
    fields: dict[str, tuple[str, ...]] = {}
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        known, unknown = strings(raw.get(key), key)
        fields[key] = known
        unresolved.extend(unknown)
    principals, unknown = _principals(raw.get("Principal"))
    unresolved.extend(unknown)
    not_principals, unknown = _principals(raw.get("NotPrincipal"))
    unresolved.extend(unknown)
    conditions, unknown = _conditions(raw.get("Condition"))
    unresolved.extend(unknown)
    return Statement(
        effect,
        line,
        actions=fields["Action"],
        not_actions=fields["NotAction"],
        resources=fields["Resource"],
        not_resources=fields["NotResource"],
        principals=principals,
        not_principals=not_principals,
        conditions=conditions,
        conditional=conditional,
        unresolved=tuple(unresolved),
    )


def parse_policy(
    document: object, line: int = 0, *, conditional: bool = False
) -> tuple[Statement, ...]:
    """The statements of a policy document (``{"Statement": ...}``), of a list of
    statements, or of one statement. Each statement's line is its own when it carries
    one, else `line`."""
    line = line_of(document, line)
    conditional = conditional or _conditional(document)
    if isinstance(document, Mapping) and "Statement" in document:
        body = document["Statement"]
        line = line_of(body, line)
        conditional = conditional or _conditional(body)
    else:
        body = document
    if body is None:
        return ()
    items = body if isinstance(body, Sequence) and not isinstance(body, str) else [body]
    return tuple(
        parse_statement(item, line, conditional=conditional) for item in items if item is not None
    )
