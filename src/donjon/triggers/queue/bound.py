"""The statements and locks that bound a function's pending invocations (`limits.queued`);
sql.py's enqueue and redrive run them.

The bound is checked and the rows inserted in one transaction, so concurrent enqueues
never pass it:

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

The same read refuses an enqueue of a function that has DONJON_QUEUE_MAX_DEAD dead
invocations (`dead_at_least`): they are kept until redriven or purged, so a function
that fails every event would otherwise fill the disk with them. Not exact, and need not
be: what passes it is pending, and pending invocations are bounded (`limits.queued`), so
a function holds at most that bound plus its pending ones dead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, Integer, bindparam, cast, func, insert, select
from sqlalchemy import text as sql_text

from donjon.store.tables import invocations as inv
from donjon.triggers.queue.interface import PENDING, Status

__all__ = [
    "DEFAULT_MAX_DEAD",
    "PENDING_VALUES",
    "ROOM_HINT_S",
    "RoomHints",
    "bounded_insert",
    "counting",
    "dead_full",
    "lock_function",
    "pending_count",
    "pending_of",
]


#: The statuses counted against the bound, as stored.
PENDING_VALUES = sorted(status.value for status in PENDING)


def pending_of(function: Any) -> Any:
    """How many invocations `function` (a value or a bound parameter) has pending."""
    return (
        select(func.count())
        .select_from(inv)
        .where(inv.c.function == function, inv.c.status.in_(PENDING_VALUES))
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
        .from_select(list(columns), row.where(pending_of(function) + wanted <= bound))
        .returning(inv.c.id)
    )


#: The most dead-lettered invocations a function keeps before its enqueues are refused
#: (DONJON_QUEUE_MAX_DEAD): dead letters are kept until redriven or purged, never dropped.
DEFAULT_MAX_DEAD = 10_000


@functools.cache
def _dead_at_least() -> Any:
    """Whether the function bound as `function` has at least `q_bound` dead invocations,
    as a statement built once: it reads at most that many index entries, not all of them."""
    function = bindparam("function", type_=inv.c.function.type)
    some = (
        select(inv.c.id)
        .where(inv.c.function == function, inv.c.status == Status.DEAD.value)
        .limit(bindparam("q_bound", type_=Integer()))
        .subquery()
    )
    return select(func.count() >= bindparam("q_bound", type_=Integer())).select_from(some)


def dead_full(engine: Engine, function: str, max_dead: int) -> bool:
    """Whether `function` has `max_dead` dead invocations, read without the write lock."""
    with engine.connect() as conn:
        full = conn.execute(_dead_at_least(), {"function": function, "q_bound": max_dead})
        return bool(full.scalar_one())


@functools.cache
def pending_count() -> Any:
    """How many invocations the function bound as `function` has pending, as a statement
    of its own (built once)."""
    return select(pending_of(bindparam("function", type_=inv.c.function.type)))


def bounded_insert(values: dict[str, Any], wanted: int, bound: int) -> tuple[Any, dict[str, Any]]:
    """The statement and parameters inserting the row `values` only if its function's
    pending invocations and `wanted` (this row and the rest of its batch) stay within
    `bound` (see the module's doc)."""
    return _bounded_insert(tuple(values)), {**values, "q_wanted": wanted, "q_bound": bound}


@contextlib.contextmanager
def counting(engine: Engine) -> Iterator[Connection]:
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


def lock_function(conn: Connection, function: str) -> None:
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


class RoomHints:
    """What this node last saw of each function's pending count: (the count read without
    the lock, or the bound after a refusal under it, plus what the node has taken since;
    when it was seen, by the monotonic clock). Only decides whether an enqueue reads the
    count before the lock (the module's doc): never what is taken."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def had_room(self, function: str, wanted: int, bound: int) -> bool:
        """Whether the count seen, within `ROOM_HINT_S`, left room for `wanted` more under
        `bound` (then the read before the lock is skipped)."""
        seen = self._seen.get(function)
        return (
            seen is not None
            and time.monotonic() - seen[1] < ROOM_HINT_S
            and seen[0] + wanted <= bound
        )

    def taken(self, function: str, wanted: int) -> None:
        """`wanted` more were taken: the count seen grows by them (what the queue holds at
        least; its clock stays the read's)."""
        seen = self._seen.get(function)
        if seen is not None:
            self._seen[function] = (seen[0] + wanted, seen[1])

    def forget(self, function: str) -> None:
        """The next enqueue of `function` reads before the lock (one of its invocations
        was dead-lettered: its dead may be at their bound)."""
        self._seen.pop(function, None)

    def remember(self, function: str, count: int) -> None:
        if len(self._seen) >= _MAX_HINTS and function not in self._seen:
            self._seen.clear()  # a hint, not a record: losing them costs one read each
        self._seen[function] = (count, time.monotonic())
