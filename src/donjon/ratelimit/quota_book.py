"""The quotas in force on a node: a small book in memory, kept in step with the store.

The book is loaded at start, changed at once when a quota is set or removed
through this node, and read again from the database every `refresh_s` (10 s
by default, DONJON_QUOTA_REFRESH_S), so a change made through another node
sharing the database applies here within that interval. Deciding a call reads
only this book: no database read on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable

from donjon.ratelimit.interface import QuotaLimit
from donjon.store.quotas import QuotaRecord, QuotaStore

__all__ = ["REFRESH_S", "SUBJECT_KINDS", "SUBJECT_PATTERN", "QuotaBook", "split_subject"]

log = logging.getLogger("donjon")

REFRESH_S = 10.0
SUBJECT_KINDS = ("key", "role", "function")
#: A quota's subject as written in URLs and records.
SUBJECT_PATTERN = r"^(key|role|function):[A-Za-z0-9_.-]{1,128}$"
_SUBJECT = re.compile(SUBJECT_PATTERN)


def split_subject(subject: str) -> tuple[str, str] | None:
    """(kind, name) of a well-formed subject, else None."""
    if not _SUBJECT.fullmatch(subject):
        return None
    kind, _, name = subject.partition(":")
    return kind, name


class QuotaBook:
    """subject -> its quota. Read on the loop; written through `put` and `remove`."""

    def __init__(self, store: QuotaStore | None = None, *, refresh_s: float = REFRESH_S) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._records: dict[str, QuotaRecord] = {}
        #: subject -> its limit, replaced whole (never changed in place) by `_replace`. Its
        #: truth, whether any quota is set, is what the hot path asks (tested in C, where
        #: `bool(self)` is a Python call).
        self.in_force: dict[str, QuotaLimit] = {}
        self._task: asyncio.Task[None] | None = None
        #: (subject, measure, day) refused at least once here (`first_refusal`).
        self._refused: set[tuple[str, str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.in_force)

    def _replace(self, records: Iterable[QuotaRecord]) -> None:
        self._records = {r.subject: r for r in records}
        self.in_force = {
            r.subject: QuotaLimit(r.subject, r.max_invocations, r.max_compute_ms)
            for r in self._records.values()
        }

    def limits_for(self, subjects: Iterable[str]) -> list[QuotaLimit]:
        """The quotas of those of `subjects` that have one, in the order given."""
        limits = self.in_force
        return [limits[s] for s in subjects if s in limits]

    def get(self, subject: str) -> QuotaRecord | None:
        return self._records.get(subject)

    def all(self) -> list[QuotaRecord]:
        return sorted(self._records.values(), key=lambda r: r.subject)

    def first_refusal(self, subject: str, measure: str, day: str) -> bool:
        """True the first time `subject`'s `measure` is refused on `day` (on this node)."""
        seen = (subject, measure, day)
        if seen in self._refused:
            return False
        self._refused = {r for r in self._refused if r[2] >= day}  # forget earlier days
        self._refused.add(seen)
        return True

    async def put(self, record: QuotaRecord) -> bool:
        """Store the quota, then apply it here; True if the subject had none."""
        created = True
        if self._store is not None:
            created = await asyncio.to_thread(self._store.put, record)
        else:
            created = record.subject not in self._records
        self._replace([*(r for r in self._records.values() if r.subject != record.subject), record])
        return created

    async def remove(self, subject: str) -> bool:
        """Remove the quota from the store, then here; False if there was none."""
        removed = subject in self._records
        if self._store is not None:
            removed = await asyncio.to_thread(self._store.remove, subject)
        self._replace(r for r in self._records.values() if r.subject != subject)
        return removed

    async def refresh(self) -> None:
        """Read the quotas again (other nodes' changes)."""
        if self._store is not None:
            self._replace(await asyncio.to_thread(self._store.all))

    def start(self) -> None:
        if self._task is None and self._store is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="quota-book")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception:  # a busy database: the book in memory stays in force
                log.exception("reading the quotas failed")
