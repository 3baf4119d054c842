"""The forensic timeline: audit records in order, filtered, each with its seq (to prove it).

`read_timeline` pages through the log from a seq (or from the first record at
or after a time, found by bisecting the seqs), keeps the records that match
every filter given, and stops at `limit` matches, at `until`, or after
reading `scan` records, whichever comes first; the page says where to go on
(`next_after`), so a request costs a bounded read whatever the log's size.
Filtering is on the server: the client receives only what matches.

What the filters match (all given must match):
- function F: records about F (`F@version`, `function:F` as target or actor,
  `detail.function`): its deploys, calls, egress, policy events, alerts,
  quarantine and release;
- principal P (`key:<id>`, a bare key id, or `jwt:<issuer>:<sub>`): what P did
  (actor) and what was done to it (target: `key:<id>`, `principal:<P>`);
- request R: every record carrying that request id (`request_id`, `call_id`);
- source S: the records of that client address (`detail.client`, `source:<S>`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from donjon import boundedjson
from donjon.audit.tree import as_bytes
from donjon.store.tables import audit_log

__all__ = ["TimelineFilter", "TimelinePage", "category", "describe", "read_timeline"]

#: Records read per query while scanning.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    since: float | None = None
    until: float | None = None
    function: str | None = None
    principal: str | None = None
    request_id: str | None = None
    source: str | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        ts = record.get("ts")
        if self.since is not None and isinstance(ts, int | float) and ts < self.since:
            return False
        detail = record.get("detail")
        detail = detail if isinstance(detail, Mapping) else {}
        actor, target = str(record.get("actor", "")), str(record.get("target", ""))
        if self.function is not None and not _about_function(self.function, actor, target, detail):
            return False
        if self.principal is not None:
            label = self.principal if ":" in self.principal else f"key:{self.principal}"
            if label not in (actor, target) and target != f"principal:{label}":
                return False
        if self.request_id is not None and self.request_id not in (
            detail.get("request_id"),
            detail.get("call_id"),
            detail.get("last_request_id"),
        ):
            return False
        return self.source is None or (
            detail.get("client") == self.source or target == f"source:{self.source}"
        )


def _about_function(name: str, actor: str, target: str, detail: Mapping[str, Any]) -> bool:
    return (
        target == name
        or target.startswith(f"{name}@")
        or target == f"function:{name}"
        or actor == f"function:{name}"
        or detail.get("function") == name
    )


@dataclass(frozen=True, slots=True)
class TimelinePage:
    #: The matching records, in seq order, each with its `category`.
    records: list[dict[str, Any]]
    #: Go on after this seq (None: the log, or the `until` time, was reached).
    next_after: int | None
    #: Records read to make this page.
    scanned: int


def read_timeline(
    engine: Engine,
    flt: TimelineFilter,
    *,
    after: int | None = None,
    limit: int = 200,
    scan: int = 20_000,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> TimelinePage:
    """One page of the timeline (blocking: off the event loop); with `keep`, only the
    records it keeps too (what a reader scoped to some functions may read)."""
    with engine.connect() as conn:
        last = conn.execute(select(func.max(audit_log.c.seq))).scalar_one_or_none() or 0
        position = after if after is not None else _first_at(conn, flt.since, last) - 1
        out: list[dict[str, Any]] = []
        scanned = 0
        while scanned < scan and position < last:
            rows = conn.execute(
                select(audit_log.c.seq, audit_log.c.record)
                .where(audit_log.c.seq > position)
                .order_by(audit_log.c.seq)
                .limit(min(_CHUNK, scan - scanned))
            ).all()
            if not rows:
                break
            for seq, raw in rows:
                position = int(seq)
                scanned += 1
                record = _parse(as_bytes(raw), position)
                ts = record.get("ts")
                if flt.until is not None and isinstance(ts, int | float) and ts > flt.until:
                    return TimelinePage(out, None, scanned)
                if flt.matches(record) and (keep is None or keep(record)):
                    record["category"] = category(str(record.get("action", "")))
                    out.append(record)
                    if len(out) >= limit:
                        return TimelinePage(out, position if position < last else None, scanned)
    return TimelinePage(out, position if position < last else None, scanned)


def _parse(raw: bytes, seq: int) -> dict[str, Any]:
    try:
        record = boundedjson.loads(raw)
    except (ValueError, boundedjson.JSONTooDeep):
        record = None
    if not isinstance(record, dict):  # shown as it is: `donjon audit verify` says more
        return {"seq": seq, "action": "(unreadable)", "detail": {}}
    return record


def _first_at(conn: Any, since: float | None, last: int) -> int:
    """The first seq whose record's time is at or after `since` (1 if None): bisected."""
    if since is None:
        return 1
    lo, hi = 1, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(
            select(audit_log.c.seq, audit_log.c.record)
            .where(audit_log.c.seq >= mid)
            .order_by(audit_log.c.seq)
            .limit(1)
        ).first()
        ts = _parse(as_bytes(row.record), int(row.seq)).get("ts") if row is not None else None
        if row is None or (isinstance(ts, int | float) and ts >= since):
            hi = mid
        else:
            lo = mid + 1
    return lo


_CATEGORIES = (
    ("function.deploy", "deploy"),
    ("function.delete", "deploy"),
    ("function.load", "deploy"),
    ("function.invoke", "invoke"),
    ("function.throttle", "throttle"),
    ("function.release", "response"),
    ("throttle.denied", "throttle"),
    ("response.", "response"),
    ("alert.", "alert"),
    ("auth.", "denial"),
    ("authz.", "denial"),
    ("input.", "denial"),
    ("egress.", "egress"),
    ("policy.", "policy"),
    ("key.", "key"),
    ("role.", "role"),
    ("issuer.", "identity"),
    ("secret.", "secret"),
    ("vault.", "secret"),
    ("node.", "node"),
)


def category(action: str) -> str:
    """What kind of event a record is, for people: deploy, invoke, denial, alert, ..."""
    for prefix, name in _CATEGORIES:
        if action == prefix or (prefix.endswith(".") and action.startswith(prefix)):
            return name
    return "other"


def describe(record: Mapping[str, Any]) -> str:
    """One line saying what a record says (the CLI escapes it before printing)."""
    action = str(record.get("action", ""))
    target = str(record.get("target", ""))
    outcome = str(record.get("outcome", ""))
    raw = record.get("detail")
    d: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if action == "function.deploy":
        if outcome == "rejected":
            return f"deploy refused: {d.get('reason') or d.get('error') or d.get('statement', '')}"
        scan = (
            "scan SKIPPED (unsafe_skip_scan)"
            if d.get("unsafe_skip_scan")
            else f"scan: {d.get('findings', 0)} finding(s)"
        )
        broad = " BROAD GRANTS (unsafe_allow_broad)" if d.get("unsafe_allow_broad") else ""
        return f"deployed {target} ({outcome}); {scan}{broad}"
    if action == "function.invoke":
        took = f"{d.get('duration_ms', '?')} ms"
        return f"invoked {target}: {outcome} in {took} ({d.get('trigger', '?')})"
    if action == "egress.connect":
        count = f" x{d['count']}" if isinstance(d.get("count"), int) and d["count"] > 1 else ""
        return f"egress to {d.get('destination', '?')}: {outcome} ({d.get('reason', '')}){count}"
    if action == "alert.raised":
        return (
            f"ALERT {outcome} {d.get('kind', '?')} on {target}: {d.get('summary', '')}"
            f" (evidence {','.join(str(s) for s in d.get('evidence', [])[:8])})"
        )
    if action.startswith("response.") or action == "function.release":
        alert = f" (alert {d['alert_seq']})" if d.get("alert_seq") is not None else ""
        return f"{action} {target}: {outcome}{alert} {d.get('reason', '')}".rstrip()
    if category(action) in ("denial", "throttle"):
        count = f" x{d['count']}" if isinstance(d.get("count"), int) and d["count"] > 1 else ""
        return f"{action} {target}: {d.get('reason', outcome)} from {d.get('client', '?')}{count}"
    return f"{action} {target}: {outcome}"
