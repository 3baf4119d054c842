"""Quarantine: a function that stops serving, with a reason, until a person releases it.

The monitor's responder (or an admin) quarantines a function by name; every
way into it (the invoke API, http triggers, the Lambda API, schedules,
`context.invoke`) then answers 503 `Function.Quarantined` with the reason and
the alert it answers, before any function code runs. The state is stored
(store/quarantines.py), so it survives a restart and a new deploy; only
`donjon function release NAME` ends it. Each change is an audit record
(`response.quarantine`, `function.release`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from donjon.audit.changes import AuditedChanges
from donjon.audit.log import AuditEvent, AuditLog
from donjon.errors import Error
from donjon.store.quarantines import QuarantineRecord, QuarantineStore

__all__ = ["FunctionQuarantined", "NotQuarantined", "Quarantines"]

#: The longest reason kept (a finding's summary is one line).
MAX_REASON = 500


class FunctionQuarantined(Error):
    """A call to a quarantined function (503; the problem's `errorType` is this title)."""

    title = "Function.Quarantined"

    def __init__(self, record: QuarantineRecord) -> None:
        alert = f", alert {record.alert_seq}" if record.alert_seq is not None else ""
        self.record = record
        self.reason = shown_reason(record)
        super().__init__(
            f"function {record.name} is quarantined ({self.reason}{alert})",
            hint="an admin releases it with `donjon function release NAME` once it is safe",
        )

    def problem_fields(self) -> dict[str, object]:
        """What the problem document adds: the error type, the reason and the alert."""
        return {
            "errorType": self.title,
            "reason": self.reason,
            "alert_seq": self.record.alert_seq,
        }


def shown_reason(record: QuarantineRecord) -> str:
    """The reason the function's callers are told. An admin's (no alert) is theirs to
    word, shown as written. The monitor's is "KIND: SUMMARY", and a summary may hold what
    one call did with its caller's event (a runtime policy's sight of a /tmp path built
    from it): other callers are told the kind only; admins read the whole reason in
    `donjon function quarantined` and the alert."""
    if record.alert_seq is None:
        return record.reason
    return record.reason.partition(": ")[0]


class NotQuarantined(Error):
    """A release of a function that is not quarantined (404)."""

    title = "Not quarantined"


class Quarantines:
    """The quarantined functions, in memory (the hot path reads a dict), kept with the store."""

    def __init__(
        self,
        store: QuarantineStore,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
        changes: AuditedChanges | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        #: A quarantine or a release and its record, committed together (audit/changes.py).
        self._changes = changes if changes is not None else AuditedChanges(audit, None)
        self._by_name: dict[str, QuarantineRecord] = {r.name: r for r in store.all()}

    def get(self, name: str) -> QuarantineRecord | None:
        return self._by_name.get(name)

    def all(self) -> list[QuarantineRecord]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def check(self, name: str) -> None:
        """`FunctionQuarantined` if `name` is quarantined (the hot path: one dict lookup)."""
        if not self._by_name:
            return
        record = self._by_name.get(name)
        if record is not None:
            raise FunctionQuarantined(record)

    async def quarantine(
        self,
        name: str,
        reason: str,
        *,
        by: str,
        alert_seq: int | None = None,
        request_id: str | None = None,
        kind: str | None = None,
    ) -> bool:
        """Stop serving `name`; audited (`response.quarantine`). False if it already was."""
        # As text any store takes: a finding's summary holds what a call did (a lone
        # surrogate must not make the quarantine fail).
        text = " ".join(reason.split())[:MAX_REASON].encode("utf-8", "backslashreplace")
        record = QuarantineRecord(name, text.decode("utf-8"), alert_seq, self._clock(), by)
        detail: dict[str, object] = {"reason": record.reason, "alert_seq": alert_seq}
        if request_id is not None:
            detail["request_id"] = request_id
        if kind is not None:
            detail["kind"] = kind
        event = AuditEvent(by, "response.quarantine", f"function:{name}", "ok", detail)
        async with self._changes.change(event):  # recorded "ok" if the store added it
            added = await asyncio.to_thread(self._store.add, record)
            if added:
                self._by_name[name] = record
        if not added:
            await self._audit.record(dataclasses.replace(event, outcome="unchanged"))
        return added

    async def release(self, name: str, *, by: str, request_id: str) -> None:
        """Serve `name` again; audited (`function.release`). `NotQuarantined` if it was not."""
        record = self._by_name.get(name)
        event = AuditEvent(
            by,
            "function.release",
            f"function:{name}",
            "ok",
            {
                "request_id": request_id,
                # None only if another node quarantined it since this one started.
                "reason": record.reason if record else None,
                "alert_seq": record.alert_seq if record else None,
                "quarantined_since": record.since if record else None,
                "quarantined_by": record.by if record else None,
            },
        )
        async with self._changes.change(event):  # the release and its record, together
            removed = await asyncio.to_thread(self._store.remove, name)
            # Once stored (a write that failed, on a full disk, released nothing: the
            # function stays refused on this node as in the store and on the others).
            self._by_name.pop(name, None)
            if not removed:
                raise NotQuarantined(
                    f"function {name!r} is not quarantined",
                    hint="`donjon function quarantined` lists the quarantined functions",
                )
