"""`OwnThreads`: blocking work that runs on threads of its own, a bounded number at once.

Some work is long and blocking (unpacking and scanning a deploy, folding the whole audit
log into a proof). Run on the event loop's shared default pool, a few such requests held
every thread the rest of the node waits for (the sandboxes' start, the end of each call,
the stores). Here each kind gets `slots` threads of its own; up to `waiting` more wait
their turn, one caller holds at most `per_caller` of those places, and the rest are
refused at once (`_busy`: a 503 with Retry-After). A place is held until the work ends,
not until its client stops waiting: a thread keeps running once started.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from donjon.errors import Error

__all__ = ["OwnThreads", "ThreadsBusy", "give_back"]

P = ParamSpec("P")
T = TypeVar("T")


def give_back(held: dict[str, int], caller: str) -> None:
    """One place fewer held by `caller` (no entry once it holds none)."""
    left = held[caller] - 1
    if left:
        held[caller] = left
    else:
        del held[caller]


class ThreadsBusy(Error):
    """Every place of some `OwnThreads` is taken (or the caller's share of them)."""

    title = "Service unavailable"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, hint=f"retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


class OwnThreads:
    """`slots` threads named `name`, `waiting` more places, `per_caller` of them one
    caller's; `noun` names the work in refusals ("deploys")."""

    noun = "jobs"

    def __init__(
        self, slots: int, waiting: int, per_caller: int, retry_after_s: float, name: str
    ) -> None:
        if slots < 1 or waiting < 0 or per_caller < 1:
            raise ValueError(f"{name} needs at least one slot and one place a caller")
        self.slots = slots
        self.waiting = waiting
        self.per_caller = per_caller
        self.retry_after_s = retry_after_s
        self._admitted = 0
        #: The work at work or waiting, by caller (`run`).
        self._admitted_by: dict[str, int] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=name)

    def _busy(self, message: str) -> ThreadsBusy:
        """The error a refusal raises (a subclass names the work's own)."""
        return ThreadsBusy(message, retry_after_s=self.retry_after_s)

    @property
    def admitted(self) -> int:
        """The work at work or waiting now."""
        return self._admitted

    async def run(self, caller: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on these threads for `caller`; `_busy` if every place is
        taken, or `caller` holds `per_caller` of them already."""
        with self._lock:
            if self._admitted >= self.slots + self.waiting:
                raise self._busy(f"{self._admitted} {self.noun} are in progress on this node")
            mine = self._admitted_by.get(caller, 0)
            if mine >= self.per_caller:
                raise self._busy(f"{mine} of your {self.noun} are in progress on this node already")
            self._admitted += 1
            self._admitted_by[caller] = mine + 1
        release = functools.partial(self._release, caller)
        try:
            work = self._executor.submit(functools.partial(fn, *args, **kwargs))
        except RuntimeError:  # shut down
            release(None)
            raise
        work.add_done_callback(release)
        return await asyncio.wrap_future(work)

    def _release(self, caller: str, _work: object) -> None:
        with self._lock:
            self._admitted -= 1
            give_back(self._admitted_by, caller)

    def close(self) -> None:
        """Refuse new work and drop what waits (work already running runs to its end)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
