"""The embedded queue: the `invocations` table of the node's own database (store/tables.py).

A claim is one statement, so the write lock it takes is the first thing it does:

    UPDATE invocations SET status = 'running', lease_token = :t, lease_expires = :e,
        attempts = attempts + 1
    WHERE id IN (SELECT id FROM invocations WHERE <due> ORDER BY next_at LIMIT :n
                 FOR UPDATE SKIP LOCKED)
      AND <due>
    RETURNING *

SQLite has no row locks and leaves `FOR UPDATE SKIP LOCKED` out (SQLAlchemy does not
render it there): its one writer at a time serialises claims, and the repeated `<due>`
makes a row already claimed no longer match. On PostgreSQL the same statement, on the
same schema, is the multi-node backend: each node's claim skips the rows another holds
locked, and the lease columns say who owns a row once the transaction ends. Every
outcome is written `WHERE id = :id AND lease_token = :t`: a worker whose lease expired
and was claimed again writes nothing.

The bound on a function's pending invocations (`limits.queued`) is checked and the
rows inserted in one transaction, so concurrent enqueues never pass it:

    INSERT INTO invocations (...) SELECT :values
    WHERE (SELECT count(*) FROM invocations WHERE function = :f
           AND status IN ('queued', 'running', 'failed')) + :n <= :bound

On SQLite that one statement takes the database's write lock before it counts (one
writer at a time), so no other enqueue commits between the count and the insert; the
other rows of a batch follow in the same transaction, under the same lock. On
PostgreSQL, where concurrent transactions do not see each other's rows, the
transaction first takes a transaction-scoped advisory lock keyed on the function
(`pg_advisory_xact_lock`), so enqueues of one function, from every node sharing the
database, count and insert one at a time; other functions' enqueues do not wait.
The count reads the `(function, status)` index: its cost grows with the function's
pending rows, at most its bound (bench/queue_bound.py measures it). So that a flood into
a full queue (what the bound is for) does not hold every other writer behind that count,
the count is first read without the write lock (a WAL reader on SQLite, a plain read on
PostgreSQL, before the advisory lock): a queue already full is refused from that read;
only an enqueue that may fit takes the lock and counts again, exactly, as above. That
first read is skipped while the last one, less than `ROOM_HINT_S` ago on this node, saw
room for the enqueue: the count under the lock still decides, and a refusal there makes
the next enqueues read first again (so a flood holds the lock for at most one refusal
after each read that saw room), while an accepted enqueue counts once, not twice.

Events and results are sealed at rest when the queue is given a sealer (the node's
always is: vault/queueseal.py); a row keeps the ciphertext and the wrapped data key.

The store is synchronous (SQLAlchemy Core); each call runs in a thread
(`asyncio.to_thread`), as store/quotas.py's callers do, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import Error
from donjon.store.tables import invocations as inv
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue.interface import (
    PENDING,
    BatchOverBound,
    InvocationNotFound,
    InvocationQueue,
    Lease,
    QueuedInvocation,
    QueueError,
    QueueFull,
    RetryPolicy,
    Status,
)
from donjon.vault.queueseal import QueueSealer, Sealed

__all__ = ["SqlInvocationQueue", "bounded_insert", "claim_statement"]

#: Bounds of what a row keeps of an error message.
MAX_ERROR_CHARS = 2000


def _due(now: float) -> Any:
    return or_(
        and_(inv.c.status.in_([Status.QUEUED.value, Status.FAILED.value]), inv.c.next_at <= now),
        and_(inv.c.status == Status.RUNNING.value, inv.c.lease_expires <= now),
    )


def claim_statement(now: float, limit: int, token: str, expires: float) -> Any:
    """The claim (see the module's doc): lease up to `limit` due rows under `token`."""
    picked = (
        select(inv.c.id)
        .where(_due(now))
        .order_by(inv.c.next_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        update(inv)
        .where(inv.c.id.in_(picked), _due(now))
        .values(
            status=Status.RUNNING.value,
            lease_token=token,
            lease_expires=expires,
            attempts=inv.c.attempts + 1,
            updated_at=now,
        )
        .returning(*inv.c)
    )


_PENDING_VALUES = sorted(status.value for status in PENDING)


def _pending_of(function: Any) -> Any:
    """How many invocations `function` (a value or a bound parameter) has pending."""
    return (
        select(func.count())
        .select_from(inv)
        .where(inv.c.function == function, inv.c.status.in_(_PENDING_VALUES))
        .scalar_subquery()
    )


@functools.cache
def _bounded_insert(columns: tuple[str, ...]) -> Any:
    """The bounded insert of a row of `columns`, built once: its values are bound
    parameters named as the columns, plus `q_wanted` and `q_bound` (building it costs
    more than running it)."""
    # Each value cast to its column's type: PostgreSQL types a SELECT list's parameters
    # by themselves (a NULL would be text), not by the columns they are inserted into.
    row = select(*[cast(bindparam(c, type_=inv.c[c].type), inv.c[c].type) for c in columns])
    function = bindparam("function", type_=inv.c.function.type)
    wanted = bindparam("q_wanted", type_=Integer())
    bound = bindparam("q_bound", type_=Integer())
    return (
        insert(inv)
        .from_select(list(columns), row.where(_pending_of(function) + wanted <= bound))
        .returning(inv.c.id)
    )


@functools.cache
def _pending_count() -> Any:
    """How many invocations the function bound as `function` has pending, as a statement
    of its own (built once)."""
    return select(_pending_of(bindparam("function", type_=inv.c.function.type)))


def bounded_insert(values: dict[str, Any], wanted: int, bound: int) -> tuple[Any, dict[str, Any]]:
    """The statement and parameters inserting the row `values` only if its function's
    pending invocations and `wanted` (this row and the rest of its batch) stay within
    `bound` (see the module's doc)."""
    return _bounded_insert(tuple(values)), {**values, "q_wanted": wanted, "q_bound": bound}


@contextlib.contextmanager
def _counting(engine: Engine) -> Iterator[Connection]:
    """A transaction that counts a function's pending rows and writes under its lock: on
    PostgreSQL at READ COMMITTED whatever the database's `default_transaction_isolation`,
    so that the count (a statement after the lock is granted) sees what the previous
    holder committed. Under REPEATABLE READ the snapshot would be the first statement's,
    taken before the lock was granted (the bound was passed: 24 of 20); under
    SERIALIZABLE concurrent enqueues failed as serialization errors."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="READ COMMITTED")
        with conn.begin():
            yield conn


def _lock_function(conn: Connection, function: str) -> None:
    """PostgreSQL: hold the function's enqueue lock until the transaction ends."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: the statement's own write lock (one writer at a time)
    digest = hashlib.blake2b(b"donjon/queue/" + function.encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


#: Seconds a count read without the lock that saw room lets the next enqueues of the
#: function skip that read (the module's doc); functions remembered at most.
ROOM_HINT_S = 1.0
_MAX_HINTS = 10_000


class SqlInvocationQueue(InvocationQueue):
    """The queue in a SQL database (SQLite by default; PostgreSQL: see the module doc)."""

    def __init__(self, engine: Engine, sealer: QueueSealer | None = None) -> None:
        self._engine = engine
        self._sealer = sealer
        #: Per function: (its pending count as last read without the lock, or its bound
        #: after a refusal under the lock; when, by the monotonic clock). Only decides
        #: whether to read first: never what is taken.
        self._room: dict[str, tuple[int, float]] = {}

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

    def _row(self, r: Any) -> QueuedInvocation:
        return QueuedInvocation(
            id=r.id,
            function=r.function,
            trigger=r.trigger,
            source=r.source,
            type=r.type,
            principal=r.principal,
            delivery_id=r.delivery_id,
            subject=r.subject,
            event=self._opened(r, "event") or b"",
            status=Status(r.status),
            attempts=int(r.attempts),
            retry=RetryPolicy(int(r.max_attempts), float(r.backoff_s), int(r.max_age_s)),
            enqueued_at=float(r.enqueued_at),
            next_at=float(r.next_at),
            updated_at=float(r.updated_at),
            request_id=r.request_id,
            result=self._opened(r, "result"),
            error_type=r.error_type,
            error=r.error,
            admitted=bool(r.admitted),
        )

    # -- writes ------------------------------------------------------------------

    def _values(
        self, envelope: Envelope, retry: RetryPolicy, admitted: bool, now: float
    ) -> dict[str, Any]:
        invocation_id = str(uuid.uuid4())
        return {
            "id": invocation_id,
            "function": envelope.function,
            "trigger": envelope.trigger,
            "source": envelope.source,
            "type": envelope.type,
            "principal": envelope.principal,
            "delivery_id": envelope.delivery_id,
            "subject": envelope.subject,
            **self._sealed(invocation_id, "event", envelope.event),
            "status": Status.QUEUED.value,
            "attempts": 0,
            "max_attempts": retry.attempts,
            "backoff_s": retry.backoff_s,
            "max_age_s": retry.max_age_s,
            "admitted": 1 if admitted else None,
            "enqueued_at": now,
            "next_at": now,
            "updated_at": now,
        }

    async def enqueue(
        self,
        envelope: Envelope,
        retry: RetryPolicy,
        *,
        admitted: bool = False,
        bound: int | None = None,
    ) -> QueuedInvocation:
        values = self._values(envelope, retry, admitted, time.time())
        (queued,) = await self._insert([values], bound)
        return queued

    async def enqueue_all(
        self, envelopes: Sequence[Envelope], retry: RetryPolicy, *, bound: int | None = None
    ) -> list[QueuedInvocation]:
        if not envelopes:
            return []
        if len({e.function for e in envelopes}) != 1:
            raise QueueError("a batch enqueued at once is of one function")
        now = time.time()
        return await self._insert(
            [self._values(e, retry, e.admitted, now) for e in envelopes], bound
        )

    async def _insert(
        self, rows: list[dict[str, Any]], bound: int | None
    ) -> list[QueuedInvocation]:
        function = rows[0]["function"]
        if bound is not None and len(rows) > bound:  # would not fit in an empty queue
            raise BatchOverBound(function, bound, len(rows))

        def write() -> bool:
            if bound is not None and not self._had_room(function, len(rows), bound):
                count = self._count_pending(function)
                self._remember(function, count)
                if count + len(rows) > bound:
                    return False  # full: refused from a read, without the write lock
            if bound is None:
                with self._engine.begin() as conn:
                    conn.execute(insert(inv), rows)
                return True
            with _counting(self._engine) as conn:
                _lock_function(conn, function)
                # The row it inserted, if any: an INSERT ... SELECT's rowcount is not
                # the rows it wrote with every driver (psycopg's was not, here).
                if conn.execute(*bounded_insert(rows[0], len(rows), bound)).first() is None:
                    self._remember(function, bound)  # full: the next ones read first
                    return False  # nothing written: the transaction ends empty
                if len(rows) > 1:  # under the lock the first insert took
                    conn.execute(insert(inv), rows[1:])
            self._taken(function, len(rows))
            return True

        if not await self._run(write):
            raise QueueFull(function, bound or 0, len(rows))
        return [self._row(_Values(values)) for values in rows]

    async def claim(self, limit: int, lease_s: float) -> list[Lease]:
        def write() -> tuple[list[QueuedInvocation], str, float]:
            now = time.time()
            token = secrets.token_hex(16)
            expires = now + lease_s
            # A read first: an idle node's polls take no write lock (SQLite: none of
            # the audit writer's; PostgreSQL: no row lock).
            with self._engine.connect() as conn:
                if conn.execute(select(inv.c.id).where(_due(now)).limit(1)).first() is None:
                    return [], token, expires
            with self._engine.begin() as conn:
                rows = conn.execute(claim_statement(now, limit, token, expires)).all()
            return [self._row(r) for r in rows], token, expires

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
            "error_type": error_type[:128],
            "error": error[:MAX_ERROR_CHARS],
            "lease_token": None,  # nosec B105 - the lease column, cleared
            "lease_expires": None,
        }
        if request_id is not None:
            values["request_id"] = request_id
        if retry_at is not None:
            values["next_at"] = retry_at
        if not charge:
            values["attempts"] = inv.c.attempts - 1
        return await self._owned(lease, **values)

    async def redrive(
        self, invocation_id: str, retry: RetryPolicy | None, *, bound: int | None = None
    ) -> QueuedInvocation:
        found = await self.get(invocation_id)
        function = found.function if found is not None else ""

        def write() -> None:
            now = time.time()
            values: dict[str, Any] = {
                "status": Status.QUEUED.value,
                "attempts": 0,
                "admitted": None,  # a redrive is not the caller's request: full admission
                "enqueued_at": now,
                "next_at": now,
                "updated_at": now,
            }
            if retry is not None:
                values.update(
                    max_attempts=retry.attempts,
                    backoff_s=retry.backoff_s,
                    max_age_s=retry.max_age_s,
                )
            statement = update(inv).where(
                inv.c.id == invocation_id, inv.c.status == Status.DEAD.value
            )
            if bound is None:
                with self._engine.begin() as conn:
                    done = conn.execute(statement.values(**values))
            else:
                with _counting(self._engine) as conn:
                    _lock_function(conn, function)
                    statement = statement.where(_pending_of(function) < bound)
                    done = conn.execute(statement.values(**values))
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
                return int(conn.execute(statement).rowcount)

        count: int = await self._run(write)
        return count

    async def prune(self, before: float) -> int:
        def write() -> int:
            with self._engine.begin() as conn:
                return int(
                    conn.execute(
                        delete(inv).where(
                            inv.c.status == Status.SUCCEEDED.value, inv.c.updated_at < before
                        )
                    ).rowcount
                )

        count: int = await self._run(write)
        return count

    def _had_room(self, function: str, wanted: int, bound: int) -> bool:
        """Whether this node's last read of `function`'s count, within `ROOM_HINT_S`, saw
        room for `wanted` more under `bound` (then the read before the lock is skipped)."""
        seen = self._room.get(function)
        return (
            seen is not None
            and time.monotonic() - seen[1] < ROOM_HINT_S
            and seen[0] + wanted <= bound
        )

    def _taken(self, function: str, wanted: int) -> None:
        """`wanted` more were taken: the count remembered grows by them (it is what this
        node knows the queue holds at least; its clock is the read's)."""
        seen = self._room.get(function)
        if seen is not None:
            self._room[function] = (seen[0] + wanted, seen[1])

    def _remember(self, function: str, count: int) -> None:
        if len(self._room) >= _MAX_HINTS and function not in self._room:
            self._room.clear()  # a hint, not a record: losing them costs one read each
        self._room[function] = (count, time.monotonic())

    def _count_pending(self, function: str) -> int:
        """`function`'s pending invocations, read without the write lock (a WAL reader on
        SQLite, a plain read on PostgreSQL): a full queue's refusals neither wait for other
        writers nor hold them up. Only a refusal is decided from it; what is taken is
        decided by the bounded insert under the lock (the count may have moved since)."""
        with self._engine.connect() as conn:
            count: int = conn.execute(_pending_count(), {"function": function}).scalar_one()
        return count

    def _is_dead(self, invocation_id: str) -> bool:
        with self._engine.connect() as conn:
            status = conn.execute(select(inv.c.status).where(inv.c.id == invocation_id)).scalar()
        return status == Status.DEAD.value

    # -- reads -------------------------------------------------------------------

    async def pending(self, function: str | None = None) -> dict[str, int]:
        def read() -> dict[str, int]:
            statement = select(inv.c.function, func.count()).where(
                inv.c.status.in_(_PENDING_VALUES)
            )
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
            return None if r is None else self._row(r)

        found: QueuedInvocation | None = await self._run(read)
        return found

    async def dead(self, function: str | None, limit: int) -> list[QueuedInvocation]:
        def read() -> list[QueuedInvocation]:
            statement = select(inv).where(inv.c.status == Status.DEAD.value)
            if function is not None:
                statement = statement.where(inv.c.function == function)
            statement = statement.order_by(inv.c.updated_at, inv.c.id).limit(limit)
            with self._engine.connect() as conn:
                return [self._row(r) for r in conn.execute(statement).all()]

        rows: list[QueuedInvocation] = await self._run(read)
        return rows

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


class _Values:
    """A dict of column values read as a row (for `_row` of what was just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(
            {
                "request_id": None,
                "result": None,
                "result_key": None,
                "event_key": None,
                "kek_id": None,
                "admitted": None,
                "error_type": None,
                "error": None,
            },
            **values,
        )
