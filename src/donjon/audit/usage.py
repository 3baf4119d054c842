"""Which grants an audit record shows a function using: the `grant_uses` index.

Three kinds of record show a use (the shapes the gateway and the egress proxy write):

- a call of function F (action `function.invoke`, target `F@version`) whose
  detail lists `secrets_read`: F used each of those secret grants;
- a call made by function F through `context.invoke` (actor `function:F`,
  action `function.invoke`, detail `trigger: "function"`, target `G@version`):
  F used its invoke grant on G;
- a connection the egress proxy allowed for function F (action
  `egress.connect`, target `F@version`, detail `decision: "allowed"` and
  `grant`, the `permissions.egress` entry as written): F used that egress grant.

The audit writer (audit/log.py) keeps, in the same transaction as the records,
the newest record of each (function, kind, name) in `grant_uses`, so asking
which grants a function has not used since some day reads a few rows, not the
log; each row names the record (`seq`) that proves the use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import text

__all__ = ["UPSERT_USE", "USE_ACTIONS", "GrantUse", "UseKind", "grant_uses", "record_uses"]

#: A function name or a secret name (the manifest's patterns, and their length).
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_MAX_SECRETS = 256
#: An egress grant as written in the manifest (host:port, `*.` prefix, bracketed IPv6).
_GRANT = re.compile(r"[A-Za-z0-9*.:_\[\]-]{1,300}")
#: The actions whose records may show a use (the writer asks only for these).
USE_ACTIONS = frozenset({"function.invoke", "egress.connect"})


class UseKind(StrEnum):
    VAULT_READ = "secret"  # a granted secret's value was read
    INVOKE = "invoke"  # a granted function was called through context.invoke
    EGRESS = "egress"  # the egress proxy allowed a connection under this grant


@dataclass(frozen=True, slots=True)
class GrantUse:
    """Function `function` used its `kind` grant of `name` (in record `seq`, at `ts`)."""

    function: str
    kind: UseKind
    name: str


#: Keeps the newest use: rows of a batch are written in record order.
UPSERT_USE = text(
    "INSERT INTO grant_uses (function, kind, name, seq, ts)"
    " VALUES (:function, :kind, :name, :seq, :ts)"
    " ON CONFLICT (function, kind, name) DO UPDATE SET seq = excluded.seq, ts = excluded.ts"
)


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and _NAME.fullmatch(value) else None


def grant_uses(action: str, actor: str, target: str, detail: Any) -> list[GrantUse]:
    """The grant uses one record shows (most records: none, decided by one comparison)."""
    if action == "egress.connect":
        return _egress_use(target, detail)
    if action != "function.invoke" or not isinstance(detail, dict | Mapping):
        return []
    read = detail.get("secrets_read")
    by_function = detail.get("trigger") == "function"
    if read is None and not by_function:
        return []  # a call that read no secret, made by a client: the usual record
    uses: list[GrantUse] = []
    called = _name(target.rpartition("@")[0])
    if called is None:
        return []
    if isinstance(read, list):
        for secret in read[:_MAX_SECRETS]:
            name = _name(secret)
            if name is not None:
                uses.append(GrantUse(called, UseKind.VAULT_READ, name))
    if by_function and actor.startswith("function:"):
        caller = _name(actor.removeprefix("function:"))
        if caller is not None:
            uses.append(GrantUse(caller, UseKind.INVOKE, called))
    return uses


def _egress_use(target: str, detail: Any) -> list[GrantUse]:
    if not isinstance(detail, dict | Mapping) or detail.get("decision") != "allowed":
        return []
    function = _name(target.rpartition("@")[0])
    grant = detail.get("grant")
    if function is None or not isinstance(grant, str) or not _GRANT.fullmatch(grant):
        return []
    return [GrantUse(function, UseKind.EGRESS, grant)]


def record_uses(
    action: str, actor: str, target: str, detail: Any, seq: int, ts: float
) -> list[dict[str, Any]]:
    """Rows for UPSERT_USE from one record about to be appended."""
    uses = grant_uses(action, actor, target, detail)
    if not uses:
        return []  # the usual record: no row
    return [
        {"function": u.function, "kind": u.kind.value, "name": u.name, "seq": seq, "ts": ts}
        for u in uses
    ]
