"""Grants a function has not used in a window, from the audit log (IAM Access Analyzer's
unused-access findings for Donjon's `permissions`).

A secret grant is used when a call of the function read the secret's value
(`secrets_read` in the call's `function.invoke` record); an invoke grant when the
function called that function through `context.invoke` (a `function.invoke`
record with actor `function:NAME` and `trigger: "function"`); an egress grant
when the egress proxy allowed a connection under it (an `egress.connect`
record with `decision: "allowed"` naming the grant).

The `grant_uses` index (audit/usage.py) names the newest record of each use;
each is read back from the log and must show that use inside the window, so a
row that disagrees with the log (an edited index) counts for nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from donjon.audit.usage import GrantUse, UseKind, grant_uses
from donjon.errors import Error
from donjon.store.tables import audit_log, function_versions
from donjon.store.tables import grant_uses as grant_uses_table

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "BadWindow", "UnusedGrants", "check_days", "unused_grants"]

DEFAULT_DAYS = 90
MAX_DAYS = 3650
DAY_S = 86400.0


class BadWindow(Error):
    """The window asked for is not a whole number of days in range."""

    title = "Bad window"


def check_days(value: object) -> int:
    """`value` as a window in days (a whole number from 1 to MAX_DAYS), or BadWindow."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
        raise BadWindow(
            f"days must be a whole number from 1 to {MAX_DAYS}, got {str(value)[:40]!r}",
            hint=f"the window is the last N days of the audit log (default {DEFAULT_DAYS})",
        )
    return value


@dataclass(frozen=True)
class LastUse:
    """The newest record inside the window that shows a grant used."""

    kind: str
    name: str
    seq: int
    ts: float


@dataclass(frozen=True)
class UnusedGrants:
    """A function's grants, split into unused and used (with their last use) in a window."""

    function: str
    version: int
    days: int
    since: float
    secrets: tuple[str, ...]
    egress: tuple[str, ...]
    invoke: tuple[str, ...]
    used: tuple[LastUse, ...]
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "version": self.version,
            "days": self.days,
            "since": self.since,
            "unused": {
                "secrets": list(self.secrets),
                "egress": list(self.egress),
                "invoke": list(self.invoke),
            },
            "used": [
                {"kind": u.kind, "name": u.name, "last_used": u.ts, "record": u.seq}
                for u in self.used
            ],
            "notes": list(self.notes),
        }


def unused_grants(
    engine: Engine,
    function: str,
    version: int,
    granted: dict[str, tuple[str, ...]],
    days: int,
    now: float | None = None,
    run_from: int = 1,
) -> UnusedGrants:
    """Which of `granted` ({"secrets", "egress", "invoke"} -> names) `function` has not
    used in the `days` before `now`, counting only uses since version `run_from` was
    deployed (the first version of its owner's run: a name removed and deployed again is
    another function, whose uses are not this one's). Blocking (reads the database): off
    the event loop."""
    days = check_days(days)
    since = (time.time() if now is None else now) - days * DAY_S
    secrets, invoke = granted.get("secrets", ()), granted.get("invoke", ())
    egress = granted.get("egress", ())
    wanted = (
        {(UseKind.VAULT_READ.value, s) for s in secrets}
        | {(UseKind.INVOKE.value, f) for f in invoke}
        | {(UseKind.EGRESS.value, e) for e in egress}
    )
    t = grant_uses_table
    query = select(t.c.kind, t.c.name, t.c.seq, t.c.ts).where(
        t.c.function == function, t.c.ts >= since
    )
    with engine.connect() as conn:
        if run_from > 1:
            began = conn.execute(
                select(function_versions.c.created_at).where(
                    (function_versions.c.name == function)
                    & (function_versions.c.version == run_from)
                )
            ).scalar_one_or_none()
            since = max(since, float(began or 0.0))
            query = query.where(t.c.ts >= since)
        rows = [r for r in conn.execute(query) if (r.kind, r.name) in wanted]
        records = _records(conn, [int(r.seq) for r in rows])
    used: list[LastUse] = []
    notes: list[str] = []
    for r in sorted(rows, key=lambda r: (r.kind, r.name)):
        expected = GrantUse(function, UseKind(r.kind), r.name)
        record = records.get(int(r.seq))
        if record is None or float(record.get("ts", 0)) < since or expected not in _uses(record):
            notes.append(
                f"the index names audit record {r.seq} for {r.kind} {r.name}, which does not"
                " show that use: counted unused (run `donjon audit verify`)"
            )
            continue
        used.append(LastUse(r.kind, r.name, int(r.seq), float(record["ts"])))
    seen = {(u.kind, u.name) for u in used}
    return UnusedGrants(
        function=function,
        version=version,
        days=days,
        since=since,
        secrets=tuple(s for s in secrets if (UseKind.VAULT_READ.value, s) not in seen),
        egress=tuple(e for e in egress if (UseKind.EGRESS.value, e) not in seen),
        invoke=tuple(f for f in invoke if (UseKind.INVOKE.value, f) not in seen),
        used=tuple(used),
        notes=tuple(notes),
    )


def _records(conn: Any, seqs: list[int]) -> dict[int, dict[str, Any]]:
    """The audit records `seqs` (by primary key), parsed."""
    if not seqs:
        return {}
    query = select(audit_log.c.seq, audit_log.c.record).where(audit_log.c.seq.in_(seqs))
    out: dict[int, dict[str, Any]] = {}
    for row in conn.execute(query):
        try:
            record = json.loads(bytes(row.record))
        except ValueError:
            continue
        if isinstance(record, dict):
            out[int(row.seq)] = record
    return out


def _uses(record: dict[str, Any]) -> list[GrantUse]:
    return grant_uses(
        str(record.get("action", "")),
        str(record.get("actor", "")),
        str(record.get("target", "")),
        record.get("detail"),
    )
