"""Which records in flight at an audit writer's death that writer had committed.

A writer process killed after a commit and before its answer reached the node leaves
records that are in the log while their callers got AuditError (audit/remote.py fails
every record in flight, as it cannot tell). A caller that appends again (audit/changes.py's
`append_again`: the outcome of an async call, an admin change) would repeat its record.
The log has one writer at a time, which commits records in the order they were sent: so
once a new writer has read the log, the log's growth since the last answered commit is
how many of the lost records, from the first, were committed (`settle`). What is known
of one death stays known through the next (the last `KEPT` deaths'): a caller asleep
between two tries (up to a second) may ask only after a later writer has started.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from donjon.audit.events import AuditEvent

__all__ = ["LostRecords"]

log = logging.getLogger("donjon.audit")

#: The deaths whose committed records are remembered: more than a minute's restarts
#: (audit/remote.py's RESTARTS), so any caller still appending again (APPEND_RETRY_S)
#: finds its record's.
KEPT = 8


class LostRecords:
    """The records of the last writer death, and those of the last `KEPT` deaths known to
    be in the log."""

    __slots__ = ("_at", "_landed", "_lost")

    def __init__(self) -> None:
        self._lost: list[AuditEvent] = []
        #: The log's size as the dead writer last answered it.
        self._at = 0
        #: The committed ones of each death, by identity (the object their caller
        #: appends again), the newest last.
        self._landed: deque[dict[int, AuditEvent]] = deque(maxlen=KEPT)

    def lose(self, in_flight: Iterable[AuditEvent], size: int) -> None:
        """A writer died with `in_flight` (in the order sent) unanswered, the log's size
        as it last answered being `size`."""
        self._lost = list(in_flight)
        self._at = size

    def settle(self, size: int) -> None:
        """A new writer read the log at `size` records: the first `size - at` lost
        records were committed, the rest not. Those of an earlier death stay known (a
        caller may ask only now); those of the `KEPT`-th before are forgotten (their
        callers appended again long since, or gave up). Before, each settling forgot the
        last: a record committed unanswered was appended again after two deaths."""
        lost, self._lost = self._lost, []
        held = size - self._at
        if not lost or held == 0:
            return
        if not 0 < held <= len(lost):  # not grown by these records alone: none is known
            log.error("the audit log grew by %d records while %d were lost", held, len(lost))
            return
        self._landed.append({id(event): event for event in lost[:held]})
        log.warning("%d of the %d records lost with the writer were committed", held, len(lost))

    def landed(self, event: AuditEvent) -> bool:
        """`event` (this object) was lost with its writer, which had committed it. False
        for any other record, and until a new writer has read the log."""
        key = id(event)
        return any(landed.get(key) is event for landed in self._landed)
