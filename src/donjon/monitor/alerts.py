"""The alerts index: what `GET /v1/alerts` and `donjon alerts` read.

Every alert is an `alert.raised` audit record first; once committed, the
monitor adds a copy here (table `alerts`, keyed by the record's seq), so a
listing reads the alerts it lists and nothing else of the log. The row is a
pointer: the record itself is what can be proved.

`alerts_indexed.through` is the seq up to which every alert record of the log
is in the index. The monitor moves it forward as it goes (never past an alert
still being indexed); at start, `catch_up` reads only the records after it and
indexes the alerts among them, those of a node that died between writing an
alert's record and indexing it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.errors import Error
from donjon.store.tables import alerts, alerts_indexed, audit_log

__all__ = ["ACTOR", "MAX_LIST", "RAISED", "AlertPage", "AlertStore", "AlertsError", "alert_view"]

#: The actor and action of the monitor's alert records.
ACTOR = "system:monitor"
RAISED = "alert.raised"

#: Alerts one listing returns at most.
MAX_LIST = 1000
#: Alerts one filtered listing reads at most.
MAX_SCAN = 20_000
#: The first bytes of every alert record (canonical JSON: "action" is the first key).
_PREFIX = b'{"action":"alert.raised",'
#: Records read per round while catching up.
_CATCH_UP_BATCH = 5000


def alert_view(seq: int, ts: float, event: AuditEvent) -> dict[str, Any]:
    """An alert as the API, the index and the webhooks show it, from its audit record."""
    detail = event.detail
    return {
        "seq": seq,
        "ts": ts,
        "id": detail.get("id", ""),
        "kind": detail.get("kind", ""),
        "detector": detail.get("detector", ""),
        "mode": detail.get("mode", ""),
        "severity": event.outcome,
        "subject": event.target,
        "summary": detail.get("summary", ""),
        "evidence": list(detail.get("evidence", ())),
        "detail": dict(detail.get("detail", {})),
        **({"suppressed": detail["suppressed"]} if "suppressed" in detail else {}),
        **({"key": detail["key"]} if "key" in detail else {}),
    }


def _committed(seq: int, raw: Any) -> CommittedRecord:
    """A stored record as the audit log's listeners see it."""
    record = json.loads(bytes(raw))
    event = AuditEvent(
        str(record["actor"]),
        str(record["action"]),
        str(record["target"]),
        str(record["outcome"]),
        record.get("detail") or {},
    )
    return CommittedRecord(seq, float(record["ts"]), event)


class AlertsError(Error):
    """The alerts index could not be read or written."""

    title = "Alerts error"


@dataclass(frozen=True)
class AlertPage:
    """Alerts oldest first; `more`: older ones matched too (ask again with `before`)."""

    alerts: list[dict[str, Any]]
    more: bool
    #: A filtered listing that read `MAX_SCAN` rows without filling: go on before this seq.
    go_on: int | None = None


class AlertStore:
    """The alerts index over one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def add(self, alert: Mapping[str, Any]) -> None:
        """Index one alert (again is harmless)."""
        await asyncio.to_thread(self.add_now, alert)

    def add_now(self, alert: Mapping[str, Any]) -> None:
        row = {
            "seq": int(alert["seq"]),
            "ts": float(alert["ts"]),
            "kind": str(alert["kind"])[:128],
            "alert": json.dumps(dict(alert), sort_keys=True),
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(alerts).values(**row))
        except IntegrityError:  # indexed already (a catch-up after a crash)
            pass

    def listing(
        self,
        *,
        since: float | None = None,
        kind: str | None = None,
        n: int = 100,
        before: int | None = None,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> AlertPage:
        """The newest `n` alerts at or after `since` (of `kind`; before seq `before`); with
        `keep`, those it keeps (reading at most `MAX_SCAN` rows: `more` says to go on)."""
        if not 1 <= n <= MAX_LIST:
            raise AlertsError(f"n must be 1 to {MAX_LIST}, not {n}", hint="page with `before`")
        query = select(alerts.c.seq, alerts.c.alert).order_by(alerts.c.seq.desc())
        if since is not None:
            query = query.where(alerts.c.ts >= since)
        if kind:
            query = query.where(alerts.c.kind == kind)
        chunk = n + 1 if keep is None else MAX_LIST
        page: list[dict[str, Any]] = []
        read = 0
        with self._engine.connect() as conn:
            while len(page) <= n and read < MAX_SCAN:
                at = query if before is None else query.where(alerts.c.seq < before)
                rows = conn.execute(at.limit(chunk)).all()
                for seq, raw in rows:
                    before, read = int(seq), read + 1
                    alert = json.loads(raw)
                    if keep is None or keep(alert):
                        page.append(alert)
                if len(rows) < chunk:
                    break
        ran_out = read >= MAX_SCAN and len(page) < n
        more = len(page) > n or ran_out
        page = page[:n]
        page.reverse()
        return AlertPage(page, more=more, go_on=before if ran_out else None)

    # -- the watermark ------------------------------------------------------------

    def through(self) -> int | None:
        with self._engine.connect() as conn:
            value = conn.execute(select(alerts_indexed.c.through)).scalar()
        return None if value is None else int(value)

    def save_through(self, seq: int) -> None:
        """Move the watermark forward to `seq` (never back)."""
        with self._engine.begin() as conn:
            current = conn.execute(select(alerts_indexed.c.through)).scalar()
            if current is None:
                conn.execute(insert(alerts_indexed).values(id=1, through=seq))
            elif seq > current:
                conn.execute(update(alerts_indexed).values(through=seq))

    def catch_up(self, after: int | None) -> int:
        """Index the alert records after seq `after` (the watermark); their count.

        The watermark is not moved: the monitor moves it once it has examined
        those records too (`records_after`), so a crash in between redoes both.
        A data dir without a watermark (`after` None) has never run the monitor,
        so its log holds no alert records: the watermark starts at its last seq.
        """
        last = self.last_seq()
        if after is None:
            self.save_through(last)
            return 0
        found = 0
        start = after
        while start < last:
            end = min(start + _CATCH_UP_BATCH, last)
            query = (
                select(audit_log.c.seq, audit_log.c.record)
                .where(audit_log.c.seq > start, audit_log.c.seq <= end)
                .where(func.substr(audit_log.c.record, 1, len(_PREFIX)) == _PREFIX)
                .order_by(audit_log.c.seq)
            )
            with self._engine.connect() as conn:
                rows = list(conn.execute(query))
            for seq, raw in rows:
                record = _committed(int(seq), raw)
                if record.event.actor == ACTOR:
                    self.add_now(alert_view(record.seq, record.ts, record.event))
                    found += 1
            start = end
        return found

    def last_seq(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one()
            )

    def records_after(self, after: int, most: int) -> list[CommittedRecord]:
        """The newest `most` records after seq `after`, oldest first (for a replay)."""
        query = (
            select(audit_log.c.seq, audit_log.c.record)
            .where(audit_log.c.seq > after)
            .order_by(audit_log.c.seq.desc())
            .limit(most)
        )
        with self._engine.connect() as conn:
            rows = list(conn.execute(query))
        rows.reverse()
        return [_committed(int(seq), raw) for seq, raw in rows]

    async def indexed_through(self, seq: int) -> None:
        await asyncio.to_thread(self.save_through, seq)
