"""Which records in flight at an audit writer's death that writer had committed.

A writer process killed after a commit and before its answer reached the node leaves
records that are in the log while their callers got AuditError (audit/remote.py fails
every record in flight, as it cannot tell). A caller that appends again (audit/changes.py's
`append_again`: the outcome of an async call, an admin change) would repeat its record.
The log has one writer at a time, which commits records in the order they were sent: so
once a new writer has read the log, the log's growth since the last answered commit is
how many of the lost records, from the first, were committed (`settle`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from donjon.audit.events import AuditEvent

__all__ = ["LostRecords"]

log = logging.getLogger("donjon.audit")


class LostRecords:
    """The records of the last writer death, and those of them known to be in the log."""

    __slots__ = ("_at", "_landed", "_lost")

    def __init__(self) -> None:
        self._lost: list[AuditEvent] = []
        #: The log's size as the dead writer last answered it.
        self._at = 0
        #: The committed ones, by identity (the object their caller appends again).
        self._landed: dict[int, AuditEvent] = {}

    def lose(self, in_flight: Iterable[AuditEvent], size: int) -> None:
        """A writer died with `in_flight` (in the order sent) unanswered, the log's size
        as it last answered being `size`."""
        self._lost = list(in_flight)
        self._at = size

    def settle(self, size: int) -> None:
        """A new writer read the log at `size` records: the first `size - at` lost
        records were committed, the rest not. Those of an earlier death are forgotten
        (their callers appended again meanwhile, or gave up)."""
        lost, self._lost = self._lost, []
        self._landed = {}
        held = size - self._at
        if not lost or held == 0:
            return
        if not 0 < held <= len(lost):  # not grown by these records alone: none is known
            log.error("the audit log grew by %d records while %d were lost", held, len(lost))
            return
        self._landed = {id(event): event for event in lost[:held]}
        log.warning("%d of the %d records lost with the writer were committed", held, len(lost))

    def landed(self, event: AuditEvent) -> bool:
        """`event` (this object) was lost with its writer, which had committed it. False
        for any other record, and until a new writer has read the log."""
        return self._landed.get(id(event)) is event
