"""AWS managed policies as statements: a dated, hand-written table
(``scan/iac/data/managed_policies.json``) of what the common ones grant, so rules judge
``Policies: [AdministratorAccess]`` or ``arn:aws:iam::aws:policy/IAMFullAccess`` by
their content, like an inline policy.

What is not in the table:

- an AWS managed policy named ``...FullAccess`` (``AmazonRoute53FullAccess``) is read by
  AWS's naming convention as full access to its service (`full_access_by_name`), at
  medium confidence;
- any other AWS managed policy, and every customer managed policy the template does not
  define, has unknown content: rule DJ-IAC-005 reports it at low confidence (never
  treated as harmless, never gating a deploy on its own).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

from donjon.scan.iac.model import Condition, Effect, Statement

__all__ = ["ManagedPolicy", "full_access_by_name", "lookup", "managed_name", "table_date"]

_AWS_ARN = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)")
_FULL_ACCESS = re.compile(r"(?i)^[\w+=,.@-]*fullaccess(?:v\d+)?$")


@dataclass(frozen=True)
class ManagedPolicy:
    """One AWS managed policy from the table."""

    name: str
    statements: tuple[Statement, ...]


def managed_name(written: str) -> str | None:
    """The AWS managed policy's name, from a bare name (SAM ``Policies``) or an ARN in the
    ``aws`` account; None for a customer managed policy (any other account's ARN)."""
    text = written.strip()
    arn = _AWS_ARN.fullmatch(text)
    if arn:
        return arn.group(1)
    if text.startswith("arn:") or not text or "/" in text or ":" in text:
        return None
    return text


def full_access_by_name(name: str) -> bool:
    """An AWS managed policy whose name says it grants a whole service (``*FullAccess``)."""
    return bool(_FULL_ACCESS.match(name))


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def _statement(raw: dict[str, object], line: int) -> Statement:
    conditions: list[Condition] = []
    block = raw.get("Condition", {})
    if isinstance(block, dict):
        for operator, keys in block.items():
            if isinstance(keys, dict):
                for key, values in keys.items():
                    conditions.append(Condition(operator, key, _strings(values)))
    return Statement(
        effect=Effect.DENY if raw.get("Effect") == "Deny" else Effect.ALLOW,
        line=line,
        actions=_strings(raw.get("Action")),
        not_actions=_strings(raw.get("NotAction")),
        resources=_strings(raw.get("Resource")),
        not_resources=_strings(raw.get("NotResource")),
        conditions=tuple(conditions),
    )


@functools.cache
def _table() -> tuple[str, dict[str, list[dict[str, object]]]]:
    data_dir = resources.files("donjon.scan.iac").joinpath("data")
    text = data_dir.joinpath("managed_policies.json").read_text("utf-8")
    data = json.loads(text)
    return str(data["as_of"]), dict(data["policies"])


def table_date() -> str:
    """The date the table was last written from AWS's published definitions."""
    return _table()[0]


def lookup(written: str, line: int) -> ManagedPolicy | None:
    """The table's statements for an AWS managed policy (by name or ARN), each pointing at
    `line` (where the template names it); None when the table does not know it."""
    name = managed_name(written)
    if name is None:
        return None
    _, table = _table()
    for known, raw in table.items():
        if known.lower() == name.lower():
            return ManagedPolicy(known, tuple(_statement(s, line) for s in raw))
    return None
