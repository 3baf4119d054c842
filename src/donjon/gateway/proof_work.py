"""Where the audit API's whole-log work runs: on threads of its own, a few at a time.

An inclusion or consistency proof, and the prefix of a partial export, read and
hash every leaf of the tree they prove against (about 3 microseconds a record:
half a minute on a log of ten million); a page of checkpoints checks the
signature of each (10,000 take over a second). Run on the event loop's default
executor, a handful of such requests from any `audit:read` key (a scoped one
included) held every thread that the sandboxes' start, the end of each call and
the stores also wait for, and kept the interpreter busy for as long. Here they
take one thread of their own, three more wait for it, and a caller holds at most
two of those places: the rest are refused (503, Retry-After; donjon/own_threads.py).

The audit pages and the timeline (`GET /v1/audit`, `GET /v1/audit/timeline`) read a
bounded number of records each, but a reader scoped to some functions has each page
filter up to its bound for it, and any number of such pages ran at once on the shared
executor: they take `AuditReads`' few threads, apart from the proofs'.
"""

from __future__ import annotations

from donjon.own_threads import OwnThreads, ThreadsBusy

__all__ = ["AuditReads", "AuditReadsBusy", "ProofWork", "ProofsBusy"]


class ProofsBusy(ThreadsBusy):
    """As many audit proofs as this node builds at once are being built or waiting."""


class ProofWork(OwnThreads):
    """At most `slots` proofs at work and `waiting` more queued, half of those places
    one caller's."""

    noun = "audit proofs (and exports)"

    def __init__(self, slots: int = 1, waiting: int = 3, retry_after_s: float = 10.0) -> None:
        share = max(1, (slots + waiting) // 2)
        super().__init__(slots, waiting, share, retry_after_s, "donjon-proofs")

    def _busy(self, message: str) -> ProofsBusy:
        return ProofsBusy(message, retry_after_s=self.retry_after_s)


class AuditReadsBusy(ThreadsBusy):
    """As many audit pages as this node reads at once are being read or waiting."""


class AuditReads(OwnThreads):
    """At most `slots` audit pages (or timeline pages) read at once and `waiting` more
    queued, a quarter of those places one caller's."""

    noun = "audit reads"

    def __init__(self, slots: int = 2, waiting: int = 6, retry_after_s: float = 2.0) -> None:
        share = max(1, (slots + waiting) // 4)
        super().__init__(slots, waiting, share, retry_after_s, "donjon-audit-reads")

    def _busy(self, message: str) -> AuditReadsBusy:
        return AuditReadsBusy(message, retry_after_s=self.retry_after_s)
