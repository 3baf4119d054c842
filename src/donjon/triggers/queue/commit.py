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
    them, or None if none is there; asked again while it does not answer, up to LOOK_S (a
    connection lost at the commit is opened anew), then its QueueError. Each is looked
    for: any one found says the batch was stored, though others may have run and been
    pruned since (before, the first alone was looked for: a batch whose first had gone
    was refused while the rest ran, unrecorded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOOK_S
    found = []
    for ident in ids:
        row = await _asked(queue, ident, loop, deadline)
        if row is not None:
            found.append(row)
    return found or None


async def _asked(
    queue: InvocationQueue, ident: str, loop: asyncio.AbstractEventLoop, deadline: float
) -> QueuedInvocation | None:
    """`queue.get(ident)`, asked again while the database does not answer, until
    `deadline` (then its QueueError)."""
    pause = 0.1
    while True:
        try:
            return await queue.get(ident)
        except QueueError:
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
