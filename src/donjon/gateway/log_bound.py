"""The bound on a function's invocation log (DONJON_LOG_MAX_PER_FUNCTION).

Every call leaves one entry (up to 16 KiB, gateway/calllog.py), kept for
DONJON_LOG_RETENTION_DAYS whatever their number: a function that prints on every call
would fill the database at the pace of its calls. A function keeps its newest `keep`
entries instead: once `slack` (a tenth of `keep`, at least one) more have been written
by this node, its oldest past `keep` are deleted, off the event loop, one trim of a
function at a time. So a function holds at most `keep` plus `slack` entries (plus the
calls of other nodes sharing the database, each trimming at its own count), a bound in
entries, not in time. The node's periodic retention purge trims every deployed function
too (what a restart's lost counts left). Losing the oldest log lines is what any log
retention does; the audit log, the evidence of each call, is never trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from donjon.store.logs import InvocationLogStore

__all__ = ["TRIM_BATCH", "TRIM_MAX_BATCHES", "LogBound"]

log = logging.getLogger("donjon")

#: Rows one trim statement deletes at most (the write lock is held that long), and how
#: many statements one trim runs at most (a backlog left by an upgrade goes in rounds).
TRIM_BATCH = 1000
TRIM_MAX_BATCHES = 100


class LogBound:
    """Counts the entries this node writes per function and trims past the bound."""

    def __init__(self, logs: InvocationLogStore, keep: int) -> None:
        self._logs = logs
        self.keep = keep
        self.slack = max(1, keep // 10)
        #: Entries written per function since its last trim started.
        self._written: dict[str, int] = {}
        self._trims: dict[str, asyncio.Task[None]] = {}

    def note(self, function: str) -> None:
        """One more entry of `function` was written (its call's record is committed)."""
        written = self._written.get(function, 0) + 1
        self._written[function] = written
        if written >= self.slack and function not in self._trims:
            self._start(function)

    def _start(self, function: str) -> None:
        self._written[function] = 0
        task = asyncio.get_running_loop().create_task(
            self._trim(function), name=f"log-bound:{function}"
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
                n = await asyncio.to_thread(self._logs.trim, function, self.keep, TRIM_BATCH)
                if n < TRIM_BATCH:
                    return
        except Exception:  # a busy database: the next trim deletes them
            log.exception("trimming the invocation log of %s failed", function)

    async def trim_all(self, functions: Iterable[str]) -> None:
        """Trim each of `functions` now (the periodic purge: what lost counts left)."""
        for function in functions:
            if function not in self._trims:
                await self._trim(function)

    async def close(self) -> None:
        """Wait for the trims running (the node is stopping); none starts after."""
        while self._trims:
            for task in list(self._trims.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
