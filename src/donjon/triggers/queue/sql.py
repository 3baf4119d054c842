"""The embedded queue: the `invocations` table of the node's own database (store/tables.py).

A claim is one statement (claim.py), so the write lock it takes is the first thing it
does, on SQLite and PostgreSQL alike; every outcome is written `WHERE id = :id AND
lease_token = :t`: a worker whose lease expired and was claimed again writes nothing.

Bounds: a function's pending invocations (`limits.queued`), bound.py; the node's, all
functions' (DONJON_QUEUE_MAX_PENDING), node_bound.py. Events and results are sealed at
rest (vault/queueseal.py): a row keeps the ciphertext and the wrapped data key.

Each call of the (synchronous) store runs in a thread, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import Error
from donjon.store.audit_outbox import enlist
from donjon.store.tables import invocations as inv
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue.bound import (
    DEFAULT_MAX_DEAD,
    PENDING_VALUES,
    RoomHints,
    bounded_insert,
    counting,
    dead_full,
    lock_function,
    pending_count,
    pending_of,
)
from donjon.triggers.queue.claim import UNREADABLE, claim_statement, dead_unreadable, due
from donjon.triggers.queue.commit import told
from donjon.triggers.queue.finished import prune_succeeded, trim_succeeded
from donjon.triggers.queue.interface import (
    BatchOverBound,
    DeadLettersFull,
    InvocationNotFound,
    InvocationQueue,
    Lease,
    QueuedInvocation,
    QueueError,
    QueueFull,
    RetryPolicy,
    Status,
)
from donjon.triggers.queue.node_bound import DEFAULT_MAX_PENDING, NodePending
from donjon.triggers.queue.rows import RowValues, db_text, invocation_of, queued_columns
from donjon.vault.queueseal import QueueSealer, Sealed

__all__ = ["SqlInvocationQueue"]

#: Bounds of what a row keeps of an error message.
MAX_ERROR_CHARS = 2000


class SqlInvocationQueue(InvocationQueue):
    """The queue in a SQL database (SQLite by default; PostgreSQL: see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        sealer: QueueSealer | None = None,
        *,
        max_dead: int = DEFAULT_MAX_DEAD,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._engine = engine
        self._sealer = sealer
        self._max_dead = max_dead  # dead invocations kept before enqueues are refused
        self._room = RoomHints()  # each function's count as last seen (bound.py)
        self._node = NodePending(max_pending)  # every function's together (node_bound.py)

    @property
    def engine(self) -> Engine:
        return self._engine

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except SQLAlchemyError as e:
            raise QueueError(
                f"the queue's database failed: {type(e).__name__}",
                hint="check the node's database (donjon doctor); the request changed nothing",
            ) from e
        except QueueError:
            raise
        except Error as e:  # a row that does not open (vault/queueseal.py)
            raise QueueError(e.message, hint=e.hint) from e

    def _sealed(self, invocation_id: str, part: str, plain: bytes) -> dict[str, Any]:
        """The columns holding `plain`: sealed when the queue has a sealer."""
        if self._sealer is None:
            return {part: plain}
        sealed = self._sealer.seal(invocation_id, part, plain)
        return {part: sealed.ciphertext, f"{part}_key": sealed.wrapped_key, "kek_id": sealed.kek_id}

    def _opened(self, r: Any, part: str) -> bytes | None:
        raw, key = getattr(r, part), getattr(r, f"{part}_key")
        if raw is None:
            return None
        if key is None:  # written in the clear (no sealer)
            return bytes(raw)
        if self._sealer is None:
            raise QueueError(f"invocation {r.id} is sealed and this queue has no key")
        return self._sealer.open(r.id, part, Sealed(bytes(raw), bytes(key), r.kek_id))

    def _row(self, r: Any, *, shown: bool = False) -> QueuedInvocation:
        """`r` as an invocation. `shown`: a row whose event or result does not open (edited,
        moved) is returned with neither, its error saying why; else that raises."""
        try:
            event, result, error = self._opened(r, "event"), self._opened(r, "result"), None
        except Error as e:
            if not shown:
                raise
            event, result, error = None, None, f"its sealed data does not open: {e.message}"
        if error is None:
            return invocation_of(r, event, result, r.error_type, r.error)
        return invocation_of(r, event, result, UNREADABLE, error[:MAX_ERROR_CHARS])

    # -- writes ------------------------------------------------------------------

    def _values(
        self,
        envelope: Envelope,
        retry: RetryPolicy,
        admitted: bool,
        now: float,
        version: int | None = None,
        invocation_id: str | None = None,
    ) -> dict[str, Any]:
        invocation_id = invocation_id or str(uuid.uuid4())
        return {
            "id": invocation_id,
            **queued_columns(envelope, retry, admitted, now, version),
            **self._sealed(invocation_id, "event", envelope.event),
        }

    async def enqueue(
        self,
        envelope: Envelope,
        retry: RetryPolicy,
        *,
        admitted: bool = False,
        bound: int | None = None,
        version: int | None = None,
        invocation_id: str | None = None,
    ) -> QueuedInvocation:
        values = self._values(envelope, retry, admitted, time.time(), version, invocation_id)
        (queued,) = await self._insert([values], bound)
        return queued

    async def enqueue_all(
        self,
        envelopes: Sequence[Envelope],
        retry: RetryPolicy,
        *,
        bound: int | None = None,
        version: int | None = None,
        invocation_ids: Sequence[str] | None = None,
    ) -> list[QueuedInvocation]:
        if not envelopes:
            return []
        if len({e.function for e in envelopes}) != 1:
            raise QueueError("a batch enqueued at once is of one function")
        if invocation_ids is not None and len(invocation_ids) != len(envelopes):
            raise QueueError("one invocation id an envelope")
        now = time.time()
        ids: Sequence[str | None] = invocation_ids or [None] * len(envelopes)
        return await self._insert(
            [
                self._values(e, retry, e.admitted, now, version, i)
                for e, i in zip(envelopes, ids, strict=True)
            ],
            bound,
        )

    async def _insert(
        self, rows: list[dict[str, Any]], bound: int | None
    ) -> list[QueuedInvocation]:
        function = rows[0]["function"]
        if bound is not None and len(rows) > bound:  # would not fit in an empty queue
            raise BatchOverBound(function, bound, len(rows))

        def write() -> bool | None:
            read = bound is None or not self._room.had_room(function, len(rows), bound)
            if read and dead_full(self._engine, function, self._max_dead):
                return None  # its dead letters are kept: nothing new is taken
            if bound is not None and read:
                count = self._count_pending(function)
                self._room.remember(function, count)
                if count + len(rows) > bound:
                    return False  # full: refused from a read, without the write lock
            if bound is None:
                with told(self._engine.begin()) as conn:
                    conn.execute(insert(inv), rows)
                return True
            with told(counting(self._engine)) as conn:
                lock_function(conn, function)
                # The row it inserted, if any: an INSERT ... SELECT's rowcount is not
                # the rows it wrote with every driver (psycopg's was not, here).
                if conn.execute(*bounded_insert(rows[0], len(rows), bound)).first() is None:
                    self._room.remember(function, bound)  # full: the next ones read first
                    return False  # nothing written: the transaction ends empty
                if len(rows) > 1:  # under the lock the first insert took
                    conn.execute(insert(inv), rows[1:])
            self._room.taken(function, len(rows))
            return True

        taken = await self._run(self._node.bounded, self._engine, function, len(rows), write)
        if taken is None:
            raise DeadLettersFull(function, self._max_dead, len(rows))
        if not taken:
            raise QueueFull(function, bound or 0, len(rows))
        return [self._row(RowValues(values)) for values in rows]

    async def claim(
        self, limit: int, lease_s: float, running: Mapping[str, int] | None = None
    ) -> list[Lease]:
        def write() -> tuple[list[QueuedInvocation], str, float]:
            now = time.time()
            token = secrets.token_hex(16)
            expires = now + lease_s
            # A read first: an idle node's polls take no write lock (SQLite: none of
            # the audit writer's; PostgreSQL: no row lock).
            with self._engine.connect() as conn:
                if conn.execute(select(inv.c.id).where(due(now)).limit(1)).first() is None:
                    return [], token, expires
            with self._engine.begin() as conn:
                rows = conn.execute(claim_statement(now, limit, token, expires, running)).all()
            claimed, unreadable = [], []
            for r in rows:
                try:
                    claimed.append(self._row(r))
                except Error:  # dead-lettered, not the end of the claim and all it took
                    unreadable.append(self._row(r, shown=True))
            for dead in unreadable:  # no attempt can run what does not open
                with self._engine.begin() as conn:
                    conn.execute(dead_unreadable(dead.id, token, dead.error or ""))
            return claimed, token, expires

        claimed, token, expires = await self._run(write)
        return [Lease(c, token, expires) for c in claimed]

    async def _owned(self, lease: Lease, **values: Any) -> bool:
        def write() -> bool:
            with self._engine.begin() as conn:
                done = conn.execute(
                    update(inv)
                    .where(
                        inv.c.id == lease.invocation.id,
                        inv.c.lease_token == lease.token,
                        inv.c.status == Status.RUNNING.value,
                    )
                    .values(updated_at=time.time(), **values)
                )
                return bool(done.rowcount)

        ok: bool = await self._run(write)
        return ok

    async def renew(self, lease: Lease, lease_s: float) -> bool:
        return await self._owned(lease, lease_expires=time.time() + lease_s)

    async def succeed(self, lease: Lease, result: bytes, request_id: str) -> bool:
        sealed = self._sealed(lease.invocation.id, "result", result)
        return await self._owned(
            lease,
            status=Status.SUCCEEDED.value,
            **sealed,
            request_id=request_id,
            error_type=None,
            error=None,
            lease_token=None,
            lease_expires=None,
        )

    async def fail(
        self,
        lease: Lease,
        error_type: str,
        error: str,
        request_id: str | None,
        retry_at: float | None,
        *,
        charge: bool = True,
    ) -> bool:
        values: dict[str, Any] = {
            "status": (Status.DEAD if retry_at is None else Status.FAILED).value,
            "error_type": db_text(error_type[:128]),
            "error": db_text(error[:MAX_ERROR_CHARS]),
            "lease_token": None,  # nosec B105 - the lease column, cleared
            "lease_expires": None,
        }
        if request_id is not None:
            values["request_id"] = request_id
        if retry_at is not None:
            values["next_at"] = retry_at
        if not charge:
            values["attempts"] = inv.c.attempts - 1
        if retry_at is None:  # dead: the function's next enqueue reads its dead (bound.py)
            self._room.forget(lease.invocation.function)
        return await self._owned(lease, **values)

    async def redrive(
        self,
        invocation_id: str,
        retry: RetryPolicy | None,
        *,
        bound: int | None = None,
        version: int | None = None,
    ) -> QueuedInvocation:
        def write() -> None:
            # Its function (its bound's key), read alone: the row's sealed event is not opened.
            with self._engine.connect() as conn:
                named = conn.execute(select(inv.c.function).where(inv.c.id == invocation_id))
                function = str(named.scalar() or "")
            now = time.time()
            values: dict[str, Any] = {
                "status": Status.QUEUED.value,
                "attempts": 0,
                "admitted": None,  # a redrive is not the caller's request: full admission
                "enqueued_at": now,
                "next_at": now,
                "updated_at": now,
            }
            if version is not None:  # the function it goes to now (an admin's choice)
                values["version"] = version
            if retry is not None:
                values.update(
                    max_attempts=retry.attempts,
                    backoff_s=retry.backoff_s,
                    max_age_s=retry.max_age_s,
                )
            statement = update(inv).where(
                inv.c.id == invocation_id, inv.c.status == Status.DEAD.value
            )
            # Bounded: counted and written under the function's lock (bound.py).
            with self._engine.begin() if bound is None else counting(self._engine) as conn:
                if bound is not None:
                    lock_function(conn, function)
                    statement = statement.where(pending_of(function) < bound)
                done = conn.execute(statement.values(**values))
                if done.rowcount:
                    enlist(conn)  # its record is committed with it (audit/changes.py)
            if (
                not done.rowcount
                and bound is not None
                and function
                and self._is_dead(invocation_id)
            ):
                raise QueueFull(function, bound)
            if not done.rowcount:
                raise InvocationNotFound(
                    f"no dead-lettered invocation {invocation_id[:64]!r}",
                    hint="donjon dlq ls lists them",
                )

        await self._run(write)
        redriven = await self.get(invocation_id)
        if redriven is None:  # purged meanwhile
            raise InvocationNotFound(f"no invocation {invocation_id[:64]!r}")
        return redriven

    async def purge(self, function: str | None) -> int:
        def write() -> int:
            statement = delete(inv).where(inv.c.status == Status.DEAD.value)
            if function is not None:
                statement = statement.where(inv.c.function == function)
            with self._engine.begin() as conn:
                purged = int(conn.execute(statement).rowcount)
                enlist(conn, purged=purged)
            return purged

        count: int = await self._run(write)
        return count

    async def prune(self, before: float) -> int:
        count: int = await self._run(prune_succeeded, self._engine, before)
        return count

    async def trim_succeeded(self, function: str, keep: int, batch: int) -> int:
        count: int = await self._run(trim_succeeded, self._engine, function, keep, batch)
        return count

    def _count_pending(self, function: str) -> int:
        """`function`'s pending invocations, read without the write lock (bound.py): a full
        queue's refusals neither wait for other writers nor hold them up. Only a refusal is
        decided from it; the bounded insert under the lock decides what is taken."""
        with self._engine.connect() as conn:
            count: int = conn.execute(pending_count(), {"function": function}).scalar_one()
        return count

    def _is_dead(self, invocation_id: str) -> bool:
        with self._engine.connect() as conn:
            status = conn.execute(select(inv.c.status).where(inv.c.id == invocation_id)).scalar()
        return status == Status.DEAD.value

    # -- reads -------------------------------------------------------------------

    async def pending(self, function: str | None = None) -> dict[str, int]:
        def read() -> dict[str, int]:
            statement = select(inv.c.function, func.count()).where(inv.c.status.in_(PENDING_VALUES))
            if function is not None:
                statement = statement.where(inv.c.function == function)
            statement = statement.group_by(inv.c.function)
            with self._engine.connect() as conn:
                return {str(f): int(n) for f, n in conn.execute(statement).all()}

        counts: dict[str, int] = await self._run(read)
        return counts

    async def get(self, invocation_id: str) -> QueuedInvocation | None:
        def read() -> QueuedInvocation | None:
            with self._engine.connect() as conn:
                r = conn.execute(select(inv).where(inv.c.id == invocation_id)).first()
            return None if r is None else self._row(r, shown=True)

        found: QueuedInvocation | None = await self._run(read)
        return found

    async def dead(
        self, function: str | Collection[str] | None, limit: int
    ) -> list[QueuedInvocation]:
        def read() -> list[QueuedInvocation]:
            statement = select(inv).where(inv.c.status == Status.DEAD.value)
            if isinstance(function, str):
                statement = statement.where(inv.c.function == function)
            elif function is not None:
                statement = statement.where(inv.c.function.in_(sorted(function)))
            statement = statement.order_by(inv.c.updated_at, inv.c.id).limit(limit)
            with self._engine.connect() as conn:
                return [self._row(r, shown=True) for r in conn.execute(statement).all()]

        rows: list[QueuedInvocation] = await self._run(read)
        return rows

    async def dead_functions(self) -> list[str]:
        def read() -> list[str]:
            named = select(inv.c.function).where(inv.c.status == Status.DEAD.value).distinct()
            with self._engine.connect() as conn:
                return sorted(str(f) for f in conn.execute(named).scalars())

        names: list[str] = await self._run(read)
        return names

    async def dead_ids(self, function: str) -> list[str]:
        def read() -> list[str]:
            statement = (
                select(inv.c.id)
                .where(inv.c.status == Status.DEAD.value, inv.c.function == function)
                .order_by(inv.c.updated_at, inv.c.id)
            )
            with self._engine.connect() as conn:
                return [str(i) for i in conn.execute(statement).scalars()]

        ids: list[str] = await self._run(read)
        return ids
