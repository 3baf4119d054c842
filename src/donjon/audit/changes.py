"""`AuditedChanges`: an admin change is never kept without its audit record.

The change and its record are written in one store transaction (the outbox,
store/audit_outbox.py); the record is then appended to the log and its outbox
row deleted. A record may be repeated, never missing: a row whose record was
appended and not yet deleted when the node was killed is appended once more.

A change is committed before its record is appended: if the audit writer dies
then (the node starts another, audit/remote.py), the append is tried again for
up to APPEND_RETRY_S, so that a change that was made is answered as made. Past
that the request fails, saying the change was made, and the record waits in the
outbox for a drain. A change whose transaction did not commit (a full disk) has
no outbox row and gets no record, even if it was enlisted.

The drain appends the records of rows no change is appending, marked `recovered`,
then deletes the rows: once at start, before anything is served (`recover`), and
every DONJON_AUDIT_OUTBOX_DRAIN_S while the node serves (`start`). Several nodes
may share the database, and a row's change may still be running in another node,
so a drain takes a row only when it is safe to say that no one else appends it:

- a row of this node process (its `owner`) that no change here has in flight:
  the process knows itself (`_IN_FLIGHT` holds its changes between their first
  write and the deletion of their row, whichever instance runs them);
- a row whose owner is gone: a process of this boot and this pid namespace that
  no longer lives (store/outbox_owner.py), which is what a node restarted after a
  kill finds: its leftovers are appended at once, before it serves;
- a row written with no node (owner `offline`: `donjon up`'s key), taken at once;
- any other row only once it is older than the lease (DONJON_AUDIT_OUTBOX_LEASE_S):
  a live node appends a row's record when the change's block ends and tries for at
  most APPEND_RETRY_S, so a lease well above the longest change plus APPEND_RETRY_S
  means its writer has given up on it (the rows' times are their writers' clocks:
  the lease covers the nodes' clock skew too). A lease set too short costs a
  repeated record (two nodes append it), never a missing one.

Before appending, a drain claims the row (store/audit_outbox.py's `claim`, a
compare-and-set): of two drains that read a row, one appends it. A claim older
than the lease, this process's own, or one by a gone process is taken over, so a
drain killed midway (even a start's `recover`) leaves nothing stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from donjon.audit.errors import AuditError, AuditStorageFull, RecordPending
from donjon.audit.log import AuditEvent
from donjon.store import storage_full
from donjon.store.audit_outbox import OFFLINE, PENDING, AuditOutbox, OutboxRow, Pending
from donjon.store.outbox_owner import current, gone_here

__all__ = [
    "APPEND_RETRY_S",
    "OUTBOX_DRAIN_S",
    "OUTBOX_LEASE_S",
    "AuditedChanges",
    "Recorder",
    "append_again",
]

log = logging.getLogger("donjon")

#: How long a committed change's record is tried again while the audit writer is replaced.
APPEND_RETRY_S = 30.0
#: Defaults of DONJON_AUDIT_OUTBOX_DRAIN_S and DONJON_AUDIT_OUTBOX_LEASE_S.
OUTBOX_DRAIN_S = 30.0
OUTBOX_LEASE_S = 300.0

#: The ids of this process's changes, from before their first write until their row is
#: deleted (or their append failed), whichever `AuditedChanges` runs them (the node has
#: several: its own, its deployments', its quarantines'): never drained. Process-wide,
#: as rows name their owner: the process.
_IN_FLIGHT: set[str] = set()
#: The ids of rows whose record this process appended and whose row it could not delete
#: (a full disk): a drain deletes them without appending their records again. Lost with
#: the process: a node started afterwards appends such a record once more (`recovered`).
_APPENDED: set[str] = set()
#: The record a drain of this process made for a row whose append then failed (its writer
#: died): the next round asks whether that dead writer had committed it (`_landed`, by
#: the object) and otherwise appends the same object, so that a further death can tell
#: too. Before, each round made the record anew, and one committed unanswered was
#: appended twice.
_TRIED: dict[str, AuditEvent] = {}


class Recorder(Protocol):
    """Where the records go: the node's AuditLog (durable once awaited)."""

    def record(self, event: AuditEvent) -> Awaitable[None]: ...


def _event(pending: Pending) -> AuditEvent:
    e = pending.as_event()
    return AuditEvent(e["actor"], e["action"], e["target"], e["outcome"], e["detail"])


def _recovered(row: OutboxRow) -> AuditEvent:
    """The record of a row left behind, marked `recovered`; a row written with no node
    (owner OFFLINE) was meant for a drain, so its record is as written."""
    e = row.event
    if e is None:  # the row holds no record: the log says so, and the row goes
        return AuditEvent(
            "system", "audit.outbox.unreadable", f"outbox:{row.id}", "error", {"owner": row.owner}
        )
    if not row.authentic:  # not written by a node (its MAC): what it claimed, flagged
        claimed = {"owner": row.owner, "claimed": e}
        return AuditEvent(
            "system", "audit.outbox.unauthenticated", f"outbox:{row.id}", "refused", claimed
        )
    detail = dict(e.get("detail", {}))
    if row.owner != OFFLINE:
        detail["recovered"] = True
    return AuditEvent(e["actor"], e["action"], e["target"], e["outcome"], detail)


async def append_again(
    audit: Recorder, event: AuditEvent, retry_s: float, *, while_full: bool = True
) -> None:
    """Append the record of something already committed, again while the audit writer is
    replaced (for up to `retry_s`): a writer's death must not turn what was done into a
    failure, which its client would repeat. `while_full`: a full storage is waited for
    too (else raised at once). The last `AuditError` past `retry_s`."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + retry_s, 0.05
    while True:
        try:
            await audit.record(event)
            return
        except AuditStorageFull:
            if not while_full or loop.time() >= deadline:
                raise
        except AuditError:
            if loop.time() >= deadline:
                raise
        log.warning("the record of %s is tried again: the writer failed", event.action)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
        if _landed(audit, event):  # its dead writer had committed it: once is enough
            return


def _landed(audit: Recorder, event: AuditEvent) -> bool:
    """`event` is in the log though its append raised (AuditLog.landed); False for a
    recorder that cannot tell (a subsystem tested alone)."""
    landed = getattr(audit, "landed", None)
    return bool(landed(event)) if landed is not None else False


class AuditedChanges:
    """Runs admin changes with their audit records in the outbox, and drains the rows
    left behind (module docstring).

    Without an outbox (a subsystem tested alone), a change a store write made is
    recorded after it, as before the outbox."""

    def __init__(
        self,
        audit: Recorder,
        outbox: AuditOutbox | None,
        *,
        lease_s: float = OUTBOX_LEASE_S,
        append_retry_s: float = APPEND_RETRY_S,
    ) -> None:
        self._audit = audit
        self._outbox = outbox
        self._lease_s = lease_s
        self._append_retry_s = append_retry_s
        #: This node process, as rows and claims name it (store/outbox_owner.py).
        self.owner = str(current())
        self._drain_lock = asyncio.Lock()
        self._drain_task: asyncio.Task[None] | None = None

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
            owner=self.owner,
            mac_key=None if self._outbox is None else self._outbox.mac_key,
        )
        outbox = self._outbox
        pending.stored = outbox is not None
        token = PENDING.set(pending)
        _IN_FLIGHT.add(pending.id)  # before any write can enlist it
        try:
            yield pending
        finally:
            PENDING.reset(token)
            try:
                # Enlisted means written in the change's transaction, not that it
                # committed: a commit that failed (a full disk) made no change: no record.
                if await self.committed(pending):
                    await self._append(_event(pending))
                    if outbox is not None:
                        await self._forget(outbox, pending)
            finally:
                # After the deletion: a drain that read the row before it finds it gone.
                _IN_FLIGHT.discard(pending.id)

    async def committed(self, pending: Pending) -> bool:
        """Whether `pending`'s change committed: it was written with its record
        (`enlist`), and that transaction's outbox row is stored (a commit can fail after
        the write, as on a full disk; the block's own writes are then undone)."""
        outbox = self._outbox
        if not pending.enlisted:
            return False
        return outbox is None or await asyncio.to_thread(outbox.holds, pending.id)

    async def _forget(self, outbox: AuditOutbox, pending: Pending) -> None:
        """Delete the outbox row of a change whose record is in the log. The change and
        its record are both kept by then: a row that cannot be deleted for want of space
        stays (a drain of this process deletes it; a node started after this process
        appends its record once more, marked recovered), and the change is answered as
        made, not as failed."""
        try:
            await asyncio.to_thread(outbox.remove, pending.id)
        except Exception as e:
            if not storage_full(e):
                raise
            _APPENDED.add(pending.id)  # a drain deletes the row, without a second record
            log.warning(
                "the outbox row of %s stays (the storage is full): its record is in the log",
                pending.event["action"],
            )

    async def _append(self, event: AuditEvent) -> None:
        """Append the record of a committed change, again while the writer is replaced."""
        try:
            await append_again(self._audit, event, self._append_retry_s)
        except AuditError as e:
            if self._outbox is None:
                raise
            # The change was made: the answer says so, and where its record is
            # (not the writer's error, whose 503 would ask the client to repeat it).
            why = (  # not the writer's own words: "the request was not completed"
                "the node's storage is full"
                if isinstance(e, AuditStorageFull)
                else "the audit writer could not append it"
            )
            raise RecordPending(
                f"the change was made, but its audit record could not be appended to "
                f"the log yet ({why})",
                hint="the record was stored with the change; the node appends it to "
                "the log once it can be written (docs/security.md, the audit outbox)",
            ) from e

    def _takeable(self, row: OutboxRow, now: float) -> bool:
        """Whether this process may append `row`'s record now (the module docstring)."""
        if row.id in _IN_FLIGHT:
            return False
        stale = now - self._lease_s
        if row.claimed_by is not None:
            return (
                row.claimed_by == self.owner
                or (row.claimed_at is not None and row.claimed_at < stale)
                or gone_here(row.claimed_by)
            )
        return row.owner in (self.owner, OFFLINE) or row.created_at < stale or gone_here(row.owner)

    async def drain(self) -> int:
        """Append the records of the rows this process may take, marked `recovered`, and
        delete the rows; the count appended. An append that fails ends the round (the
        writer is down): the row keeps this process's claim, taken again next round."""
        outbox = self._outbox
        if outbox is None:
            return 0
        async with self._drain_lock:
            done = offline = 0
            for row in await asyncio.to_thread(outbox.waiting):
                if not self._takeable(row, time.time()):
                    continue
                if not await asyncio.to_thread(outbox.claim, row, self.owner, time.time()):
                    continue  # another drain claimed it first: it appends it
                if row.id not in _APPENDED:  # (else appended, its deletion failed: no more)
                    await self._append_drained(row)
                    _APPENDED.add(row.id)
                    if row.owner == OFFLINE:
                        offline += 1
                    else:
                        done += 1
                await asyncio.to_thread(outbox.remove, row.id)
                _APPENDED.discard(row.id)
        if done:
            log.warning("appended %d audit records left in the outbox", done)
        if offline:
            log.info("appended %d audit records of changes made with no node running", offline)
        return done + offline

    async def _append_drained(self, row: OutboxRow) -> None:
        """Append `row`'s record, unless an earlier round's is in the log (`_TRIED`)."""
        event = _TRIED.get(row.id)
        if event is not None and _landed(self._audit, event):
            _TRIED.pop(row.id, None)
            return
        if event is None:
            event = _TRIED[row.id] = _recovered(row)
        await self._audit.record(event)
        _TRIED.pop(row.id, None)

    async def recover(self) -> int:
        """The drain at start, before anything is served: the rows a killed node process
        of this host left are appended now (the module docstring); the count."""
        return await self.drain()

    def start(self, every_s: float) -> None:
        """Drain every `every_s` seconds while the node serves, until `stop`."""
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(
                self._drain_periodically(every_s), name="audit-outbox-drain"
            )

    async def _drain_periodically(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.drain()
            except Exception:  # the writer or the database is down: the next round retries
                log.exception("draining the audit outbox failed")

    async def stop(self) -> None:
        """End the periodic drain (a round under way is cancelled: its claim is this
        process's, stale after the lease, or taken at once once the process is gone)."""
        task, self._drain_task = self._drain_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
