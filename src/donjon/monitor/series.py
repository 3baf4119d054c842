"""The learned baselines' table of series: one state per subject, at most `cap` of them.

It is `robust.Bounded` (the least recently used subject goes first) keyed by a
`Subject`, with one difference inside: its entries are kept under the subject's
`text` (`kind:id`, which tells subjects apart exactly as their equality does).
A string hashes in C and keeps its hash, where a `Subject` is hashed by a Python
`__hash__` (a frame for each of the ~16 lookups a call record costs the four
baselines). The baselines' hot paths read `table` with `subject.text` directly;
everything else goes through the methods, which take and give `Subject`s.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from donjon.monitor.findings import Subject
from donjon.monitor.robust import BaselineError

__all__ = ["SubjectTable"]

S = TypeVar("S")


class SubjectTable(Generic[S]):
    """A mapping of at most `cap` subjects' states; the least recently used one goes first."""

    __slots__ = ("_cap", "_subjects", "evicted", "table")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise BaselineError(f"a cap of {cap} entries keeps nothing", hint="use 1 or more")
        self._cap = cap
        #: `subject.text` -> its state, least recently used first. Read on the hot path:
        #: `table.get(subject.text)`, then `table.move_to_end(subject.text)` if found, is
        #: `get`; anything that adds or removes an entry goes through the methods.
        self.table: OrderedDict[str, S] = OrderedDict()
        #: `subject.text` -> the subject (what iterating the table gives back).
        self._subjects: dict[str, Subject] = {}
        #: Entries dropped to keep the cap (a busy node has more subjects than it keeps).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, subject: object) -> bool:
        return isinstance(subject, Subject) and subject.text in self.table

    def __iter__(self) -> Iterator[Subject]:
        """The subjects, oldest use first (a copy: the table may change meanwhile)."""
        subjects = self._subjects
        return iter([subjects[text] for text in self.table])

    def get(self, subject: Subject) -> S | None:
        value = self.table.get(subject.text)
        if value is not None:
            self.table.move_to_end(subject.text)
        return value

    def setdefault(self, subject: Subject, make: Callable[[], S]) -> S:
        """The entry for `subject`, made (and the oldest entry dropped if full) if absent."""
        table, text = self.table, subject.text
        value = table.get(text)
        if value is not None:
            table.move_to_end(text)
            return value
        value = table[text] = make()
        self._subjects[text] = subject
        if len(table) > self._cap:
            oldest, _ = table.popitem(last=False)
            del self._subjects[oldest]
            self.evicted += 1
        return value

    def pop(self, subject: Subject) -> S | None:
        self._subjects.pop(subject.text, None)
        return self.table.pop(subject.text, None)

    def keys(self) -> list[Subject]:
        return list(self)

    def items(self) -> Iterator[tuple[Subject, S]]:
        subjects = self._subjects
        return iter([(subjects[text], value) for text, value in self.table.items()])
