"""`AuditedChanges`: an admin change is never kept without its audit record.

The change and its record are written in one store transaction (the outbox,
store/audit_outbox.py); the record is then appended to the log and its outbox
row deleted. A node killed between the commit and the append finds the row at
its next start (`recover`) and appends the record then, marked `recovered`. A
node killed after the append and before the delete appends it once more at its
next start, marked `recovered`: a record may be repeated, never missing.

A change is committed before its record is appended: if the audit writer dies
then (the node starts another, audit/remote.py), the append is tried again for
up to APPEND_RETRY_S, so that a change that was made is answered as made. Past
that the request fails and the record waits in the outbox for the next start. A
change whose transaction did not commit (a full disk) has no outbox row and gets
no record, even if it was enlisted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from donjon.audit.errors import AuditError
from donjon.audit.log import AuditEvent
from donjon.store import storage_full
from donjon.store.audit_outbox import PENDING, AuditOutbox, Pending

__all__ = ["APPEND_RETRY_S", "AuditedChanges", "Recorder"]

log = logging.getLogger("donjon")

#: How long a committed change's record is tried again while the audit writer is replaced.
APPEND_RETRY_S = 30.0


class Recorder(Protocol):
    """Where the records go: the node's AuditLog (durable once awaited)."""

    def record(self, event: AuditEvent) -> Awaitable[None]: ...


def _event(pending: Pending) -> AuditEvent:
    e = pending.as_event()
    return AuditEvent(e["actor"], e["action"], e["target"], e["outcome"], e["detail"])


class AuditedChanges:
    """Runs admin changes with their audit records in the outbox (module docstring).

    Without an outbox (a subsystem tested alone), a change a store write made is
    recorded after it, as before the outbox."""

    def __init__(self, audit: Recorder, outbox: AuditOutbox | None) -> None:
        self._audit = audit
        self._outbox = outbox

    @contextlib.asynccontextmanager
    async def change(self, event: AuditEvent) -> AsyncIterator[Pending]:
        """Run the block's store writes with `event` pending; once the block ends, append
        the record if a write enlisted it (store/audit_outbox.py's `enlist`), even if the
        block then failed. The detail gets the facts the store added."""
        pending = Pending(
            secrets.token_hex(16),
            {
                "actor": event.actor,
                "action": event.action,
                "target": event.target,
                "outcome": event.outcome,
                "detail": dict(event.detail),
            },
        )
        outbox = self._outbox
        pending.stored = outbox is not None
        token = PENDING.set(pending)
        try:
            yield pending
        finally:
            PENDING.reset(token)
            # Enlisted means written in the change's transaction, not that it committed:
            # a commit that failed (a full disk) made no change, so it gets no record.
            if pending.enlisted and (
                outbox is None or await asyncio.to_thread(outbox.holds, pending.id)
            ):
                await self._append(_event(pending))
                if outbox is not None:
                    await self._forget(outbox, pending)

    async def _forget(self, outbox: AuditOutbox, pending: Pending) -> None:
        """Delete the outbox row of a change whose record is in the log. The change and
        its record are both kept by then: a row that cannot be deleted for want of space
        stays (its record is appended once more, marked recovered, at the next start),
        and the change is answered as made, not as failed."""
        try:
            await asyncio.to_thread(outbox.remove, pending.id)
        except Exception as e:
            if not storage_full(e):
                raise
            log.warning(
                "the outbox row of %s stays (the storage is full): its record is in the log",
                pending.event["action"],
            )

    async def _append(self, event: AuditEvent) -> None:
        """Append the record of a committed change, again while the writer is replaced."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + APPEND_RETRY_S, 0.05
        while True:
            try:
                await self._audit.record(event)
                return
            except AuditError:
                if loop.time() >= deadline:
                    raise  # the record stays in the outbox: appended at the next start
                log.warning("the record of %s is tried again: the writer failed", event.action)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def recover(self) -> int:
        """Append the records of changes a killed node committed and never logged (at
        start, before anything is served); the count."""
        outbox = self._outbox
        if outbox is None:
            return 0
        waiting = await asyncio.to_thread(outbox.waiting)
        for entry_id, event in waiting:
            detail = {**event.get("detail", {}), "recovered": True}
            await self._audit.record(
                AuditEvent(
                    event["actor"], event["action"], event["target"], event["outcome"], detail
                )
            )
            await asyncio.to_thread(outbox.remove, entry_id)
        if waiting:
            log.warning("appended %d audit records of changes made before a crash", len(waiting))
        return len(waiting)
