"""`DeployQueue`: how much deploy work the node does at once.

Unpacking and scanning a bundle is blocking work. It runs on threads of its own (never
the event loop's shared default pool, which the rest of the node needs), at most
`slots` bundles at a time; up to `waiting` more deploys wait their turn, and beyond
that a deploy is refused at once with 503 and Retry-After. So however many hostile
deploys arrive together, /healthz and invocations keep their threads. An archive still
being received holds a place too (`receiving`), so the archives in the node's memory
are bounded however many uploads are held open; and one caller's archives being
received hold at most half the places, so a developer trickling uploads (each within
its body deadline) cannot keep every other deploy out. Once received, one caller's
deploys at work or waiting are at most `slots`: each scan takes its turn at the node's
one scanner, up to its time limit, and ten slow-to-scan bundles of one developer held
every place (another tenant's deploy was a 503 for minutes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from donjon.lifecycle.errors import LifecycleError
from donjon.own_threads import OwnThreads, ThreadsBusy, give_back

__all__ = ["DeployBusy", "DeployQueue"]


class DeployBusy(ThreadsBusy, LifecycleError):
    """Too many deploys are being unpacked, scanned or waiting for that on this node."""


class DeployQueue(OwnThreads):
    """At most `slots` deploys at work, `waiting` more queued, the rest refused; at most
    `slots` of them one caller's (donjon/own_threads.py)."""

    noun = "deploys"

    def __init__(self, slots: int = 2, waiting: int = 8, retry_after_s: float = 5.0) -> None:
        super().__init__(slots, waiting, slots, retry_after_s, "deploy")
        #: Archives being read now (`receiving`), not yet handed to `run`, and by whom.
        self._receiving = 0
        self._receiving_by: dict[str, int] = {}
        #: The places one caller's archives being read may hold at once.
        self.share = max(1, (slots + waiting) // 2)

    def _busy(self, message: str) -> DeployBusy:
        return DeployBusy(message, retry_after_s=self.retry_after_s)

    @contextlib.contextmanager
    def receiving(self, caller: str) -> Iterator[None]:
        """Hold a place while `caller`'s deploy archive is read (`DeployBusy` if none is
        left, or if `caller` holds its `share` of them already): archives held in memory,
        up to 256 MiB each, are as many as the deploys this queue admits, whether they are
        still arriving or already at work."""
        with self._lock:
            if self._admitted + self._receiving >= self.slots + self.waiting:
                taken = self._admitted + self._receiving
                raise self._busy(f"{taken} deploys are in progress on this node")
            mine = self._receiving_by.get(caller, 0)
            if mine >= self.share:
                raise self._busy(f"{mine} of your deploys are being received by this node already")
            self._receiving += 1
            self._receiving_by[caller] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                self._receiving -= 1
                give_back(self._receiving_by, caller)
