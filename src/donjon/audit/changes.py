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
that the request fails and the record waits in the outbox: the running node
appends it once the log can be written again (`drain`: every DRAIN_INTERVAL_S,
the rows of no change under way on this node, at least DRAIN_MIN_AGE_S old; a full
disk freed), or at its next start. A change whose
transaction did not commit (a full disk) has no outbox row and gets no record,
even if it was enlisted.
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

__all__ = ["APPEND_RETRY_S", "DRAIN_INTERVAL_S", "DRAIN_MIN_AGE_S", "AuditedChanges", "Recorder"]

log = logging.getLogger("donjon")

#: How long a committed change's record is tried again while the audit writer is replaced.
APPEND_RETRY_S = 30.0
#: Seconds between the running node's looks for outbox rows no request will append.
DRAIN_INTERVAL_S = 5.0
#: A row younger than this is left to its request even if not this node's (the nodes
#: sharing a PostgreSQL database each drain: another node's change may be under way).
DRAIN_MIN_AGE_S = 5.0


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
        #: The outbox ids of this node's changes under way: their requests append them.
        self._under_way: set[str] = set()

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
        self._under_way.add(pending.id)
        try:
            yield pending
        finally:
            PENDING.reset(token)
            try:
                # Enlisted means written in the change's transaction, not that it
                # committed: a commit that failed (a full disk) made no change: no record.
                if pending.enlisted and (
                    outbox is None or await asyncio.to_thread(outbox.holds, pending.id)
                ):
                    await self._append(_event(pending))
                    if outbox is not None:
                        await self._forget(outbox, pending)
            finally:
                self._under_way.discard(pending.id)

    async def _forget(self, outbox: AuditOutbox, pending: Pending) -> None:
        """Delete the outbox row of a change whose record is in the log. The change and
        its record are both kept by then: a row that cannot be deleted for want of space
        stays (its record is appended once more, marked recovered, by `drain` or at the
        next start), and the change is answered as made, not as failed."""
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
            except AuditError as e:
                if loop.time() >= deadline:
                    if self._outbox is None:
                        raise
                    # The change was made: the answer says so, and where its record is.
                    raise type(e)(
                        f"the change was made, but its audit record could not be appended to "
                        f"the log yet ({e.message})",
                        hint="the record was stored with the change; the node appends it to "
                        "the log once it can be written (docs/security.md, the audit outbox)",
                    ) from e
                log.warning("the record of %s is tried again: the writer failed", event.action)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def recover(self, older_than_s: float = 0.0) -> int:
        """Append the records of changes a killed node committed and never logged (at
        start, before anything is served; with `older_than_s`, while it runs: `drain`,
        the rows that old of no change under way here); the count."""
        outbox = self._outbox
        if outbox is None:
            return 0
        waiting = [
            (entry_id, event)
            for entry_id, event in await asyncio.to_thread(outbox.waiting, older_than_s)
            if entry_id not in self._under_way
        ]
        for entry_id, event in waiting:
            detail = {**event.get("detail", {}), "recovered": True}
            await self._audit.record(
                AuditEvent(
                    event["actor"], event["action"], event["target"], event["outcome"], detail
                )
            )
            await asyncio.to_thread(outbox.remove, entry_id)
        if waiting and not older_than_s:
            log.warning("appended %d audit records of changes made before a crash", len(waiting))
        elif waiting:
            log.warning("appended %d audit records their changes' requests gave up", len(waiting))
        return len(waiting)

    async def drain(self) -> None:
        """While the node runs: every DRAIN_INTERVAL_S, append the records of the outbox
        rows no request will append (theirs gave up after the change committed, for want
        of a writer or of space, or left its row undeleted), so that they do not wait
        for a restart; marked `recovered`, like those appended at start. A row whose
        append fails again is tried at the next look."""
        while True:
            await asyncio.sleep(DRAIN_INTERVAL_S)
            try:
                await self.recover(DRAIN_MIN_AGE_S)
            except Exception as e:  # logged; the row stays for the next look
                log.warning("the audit outbox is tried again later: %s", type(e).__name__)
