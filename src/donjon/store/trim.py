"""Holding what a function keeps of some rows to its newest `keep`, by count.

The node writes rows per function that are kept for a time whatever their number: each
call's invocation log entry (DONJON_LOG_MAX_PER_FUNCTION, docs/limits.md), each succeeded
async invocation with its event and result (DONJON_QUEUE_KEEP_SUCCEEDED). A function
called at its rate would fill the database at that pace. `CountedTrim` counts the rows
this node writes per function instead, and once `slack` (a tenth of `keep`, at least
one) more have been written, deletes the function's oldest past `keep`, off the event
loop, one trim of a function at a time. So a function holds at most `keep` plus `slack`
of them (plus what other nodes sharing the database wrote, each trimming at its own
count): a bound in rows, not in time. `trim_all` trims functions whose counts a restart
lost. Only rows whose oldest may go are held this way: never an accepted event still to
be run, never the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import ColumnElement, Delete, Table, delete, desc, select

__all__ = ["TRIM_BATCH", "TRIM_MAX_BATCHES", "CountedTrim", "Trim", "oldest_past"]

log = logging.getLogger("donjon")

#: Deletes up to `batch` of a function's oldest rows past its newest `keep`: the count.
Trim = Callable[[str, int, int], Awaitable[int]]

#: Rows one trim statement deletes at most (the write lock is held that long), and how
#: many statements one trim runs at most (a backlog left by an upgrade goes in rounds).
TRIM_BATCH = 1000
TRIM_MAX_BATCHES = 100


class CountedTrim:
    """Counts the rows of one kind this node writes per function; trims past `keep`."""

    def __init__(self, what: str, trim: Trim, keep: int) -> None:
        self._what = what
        self._trim_rows = trim
        self.keep = keep
        self.slack = max(1, keep // 10)
        #: Rows written per function since its last trim started.
        self._written: dict[str, int] = {}
        self._trims: dict[str, asyncio.Task[None]] = {}

    def note(self, function: str) -> None:
        """One more row of `function` was written (committed)."""
        written = self._written.get(function, 0) + 1
        self._written[function] = written
        if written >= self.slack and function not in self._trims:
            self._start(function)

    def _start(self, function: str) -> None:
        self._written[function] = 0
        task = asyncio.get_running_loop().create_task(
            self._trim(function), name=f"trim {self._what}:{function}"
        )
        self._trims[function] = task
        task.add_done_callback(lambda _: self._done(function))

    def _done(self, function: str) -> None:
        self._trims.pop(function, None)
        if self._written.get(function, 0) >= self.slack:  # written while it trimmed
            self._start(function)
        else:
            self._written.pop(function, None)

    async def _trim(self, function: str) -> None:
        try:
            for _ in range(TRIM_MAX_BATCHES):
                if await self._trim_rows(function, self.keep, TRIM_BATCH) < TRIM_BATCH:
                    return
        except Exception:  # a busy database: the next trim deletes them
            log.exception("trimming the %s of %s failed", self._what, function)

    async def trim_all(self, functions: Iterable[str]) -> None:
        """Trim each of `functions` now (what counts a restart lost left)."""
        for function in functions:
            if function not in self._trims:
                await self._trim(function)

    async def close(self) -> None:
        """Wait for the trims running (the node is stopping)."""
        while self._trims:
            for task in list(self._trims.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def oldest_past(
    table: Table, mine: ColumnElement[bool], order: Any, keep: int, batch: int
) -> Delete:
    """The statement deleting up to `batch` of the rows `mine` selects, oldest by `order`
    first, past its newest `keep` (a table's `id` names the rows)."""
    newest_dropped = (
        select(order).where(mine).order_by(desc(order)).offset(keep).limit(1).scalar_subquery()
    )
    ids = (
        select(table.c.id)
        .where(mine, order <= newest_dropped)
        .order_by(order)
        .limit(batch)
        .scalar_subquery()
    )
    return delete(table).where(table.c.id.in_(ids))
