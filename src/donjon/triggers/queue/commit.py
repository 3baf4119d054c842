"""An enqueue whose commit failed: stored or not, the database alone can say.

A COMMIT whose answer never came (PostgreSQL's connection lost while it ran, a node's
network cut) may have committed: the row then runs, though the enqueue raised. Its
caller (triggers/queue/service.py) asks the database whether the row is there before
it says nothing was stored, so that a call that runs always has its `invocation.enqueue`
record (before, its note was freed on any error, and such a row ran unrecorded).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from donjon.triggers.queue.interface import InvocationQueue, QueuedInvocation, QueueError

__all__ = ["LOOK_S", "CommitUnknown", "stored_after", "told"]


class CommitUnknown(QueueError):
    """The enqueue's transaction ran to its COMMIT, which failed: its rows may be stored."""


@contextlib.contextmanager
def told(transaction: AbstractContextManager[Connection]) -> Iterator[Connection]:
    """`transaction` (committed as it ends), a failure of its commit raised as
    CommitUnknown; one of its statements' as itself (nothing was committed then)."""
    ran = False
    try:
        with transaction as conn:
            yield conn
            ran = True
    except SQLAlchemyError as e:
        if not ran:
            raise
        raise CommitUnknown(
            f"the queue's database failed at the commit: {type(e).__name__}",
            hint="the call may have been queued all the same: if so, it is recorded"
            " (invocation.enqueue) and runs",
        ) from e


#: Seconds an enqueue whose commit failed asks the database whether its rows are stored.
LOOK_S = 10.0


async def stored_after(queue: InvocationQueue, ids: Sequence[str]) -> list[QueuedInvocation] | None:
    """The invocations `ids` (one transaction's: all stored or none) as the database has
    them, or None if they are not stored; asked again while it does not answer, up to
    LOOK_S (a connection lost at the commit is opened anew), then its QueueError."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + LOOK_S, 0.1
    while True:
        try:
            first = await queue.get(ids[0])
            break
        except QueueError:
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
    if first is None:
        return None
    rest = [await queue.get(i) for i in ids[1:]]
    return [first, *(r for r in rest if r is not None)]  # (one may have run, and gone)
