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

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from donjon.lifecycle.errors import LifecycleError

__all__ = ["DeployBusy", "DeployQueue"]

P = ParamSpec("P")
T = TypeVar("T")


class DeployBusy(LifecycleError):
    """Too many deploys are being unpacked, scanned or waiting for that on this node."""

    title = "Service unavailable"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, hint=f"retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


class DeployQueue:
    """At most `slots` deploys at work, `waiting` more queued, the rest refused; at most
    `slots` of them one caller's."""

    def __init__(self, slots: int = 2, waiting: int = 8, retry_after_s: float = 5.0) -> None:
        if slots < 1 or waiting < 0:
            raise ValueError("a deploy queue needs at least one slot")
        self.slots = slots
        self.waiting = waiting
        self.retry_after_s = retry_after_s
        self._admitted = 0
        #: Deploys at work or waiting, by caller (`run`).
        self._admitted_by: dict[str, int] = {}
        #: Archives being read now (`receiving`), not yet handed to `run`, and by whom.
        self._receiving = 0
        self._receiving_by: dict[str, int] = {}
        #: The places one caller's archives being read may hold at once.
        self.share = max(1, (slots + waiting) // 2)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="deploy")

    @property
    def admitted(self) -> int:
        """Deploys at work or waiting now."""
        return self._admitted

    @contextlib.contextmanager
    def receiving(self, caller: str) -> Iterator[None]:
        """Hold a place while `caller`'s deploy archive is read (`DeployBusy` if none is
        left, or if `caller` holds its `share` of them already): archives held in memory,
        up to 256 MiB each, are as many as the deploys this queue admits, whether they are
        still arriving or already at work."""
        with self._lock:
            if self._admitted + self._receiving >= self.slots + self.waiting:
                raise DeployBusy(
                    f"{self._admitted + self._receiving} deploys are in progress on this node",
                    retry_after_s=self.retry_after_s,
                )
            mine = self._receiving_by.get(caller, 0)
            if mine >= self.share:
                raise DeployBusy(
                    f"{mine} of your deploys are being received by this node already",
                    retry_after_s=self.retry_after_s,
                )
            self._receiving += 1
            self._receiving_by[caller] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                self._receiving -= 1
                left = self._receiving_by[caller] - 1
                if left:
                    self._receiving_by[caller] = left
                else:
                    del self._receiving_by[caller]

    async def run(self, caller: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `caller`'s blocking deploy work `fn` on the deploy threads; `DeployBusy` if
        the queue is full, or if `caller` has `slots` deploys at work or waiting already:
        the scan of each takes its turn at the node's one scanner (up to its time limit),
        so one caller's deploys queued beyond that would only keep everyone else's out."""
        with self._lock:
            if self._admitted >= self.slots + self.waiting:
                raise DeployBusy(
                    f"{self._admitted} deploys are in progress on this node",
                    retry_after_s=self.retry_after_s,
                )
            mine = self._admitted_by.get(caller, 0)
            if mine >= self.slots:
                raise DeployBusy(
                    f"{mine} of your deploys are in progress on this node already",
                    retry_after_s=self.retry_after_s,
                )
            self._admitted += 1
            self._admitted_by[caller] = mine + 1
        release = functools.partial(self._release, caller)
        try:
            work = self._executor.submit(functools.partial(fn, *args, **kwargs))
        except RuntimeError:  # shut down
            release(None)
            raise
        # Counted until the work itself ends, not until its caller stops waiting: a
        # deploy whose client went away still holds its place while its thread runs.
        work.add_done_callback(release)
        return await asyncio.wrap_future(work)

    def _release(self, caller: str, _work: object) -> None:
        with self._lock:
            self._admitted -= 1
            left = self._admitted_by[caller] - 1
            if left:
                self._admitted_by[caller] = left
            else:
                del self._admitted_by[caller]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
