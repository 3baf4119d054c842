"""The role every detector plays: see each committed record, and tick.

A detector is fed every audit record the monitor does not write itself, in
seq order, on the event loop (so it needs no lock), and is ticked
periodically so that windows can close without new records. It returns its
findings; the monitor decides, by the detector's mode, whether they become
alerts. A detector in `learn` mode is fed exactly the same way.

A detector may name the only record actions it reads (`actions`, a frozenset):
the monitor then feeds it those alone, and spares it the others (most records
are calls, which most rules ignore). Without `actions` it is fed every record.

A detector that learns (a baseline) must not learn from a record it found
anomalous: it keeps that record out of its statistics itself, since only it
knows which of its inputs a finding rests on.
"""

from __future__ import annotations

from typing import Protocol

from donjon.audit.log import CommittedRecord
from donjon.monitor.findings import Finding

__all__ = ["Detector"]


class Detector(Protocol):
    """A named source of findings over the audit log."""

    #: What DONJON_MONITOR_MODES names (`auth_failures=block`).
    name: str

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        """The findings this record completes (most records: none)."""
        ...

    def tick(self, now: float) -> list[Finding]:
        """The findings of windows that closed by `now` (periodic)."""
        ...
