"""Where the audit API's whole-log work runs: on threads of its own, a few at a time.

An inclusion or consistency proof, and the prefix of a partial export, read and
hash every leaf of the tree they prove against (about 3 microseconds a record:
half a minute on a log of ten million). Run on the event loop's default
executor, a handful of such requests from any `audit:read` key (a scoped one
included) held every thread that the sandboxes' start, the end of each call and
the stores also wait for, and kept the interpreter busy for as long. Here they
take `slots` threads of their own, `waiting` more wait for them, and a caller
has at most `share` of the places: the rest are refused (503, Retry-After).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from donjon.errors import Error

__all__ = ["ProofWork", "ProofsBusy"]

P = ParamSpec("P")
T = TypeVar("T")


class ProofsBusy(Error):
    """As many audit proofs as this node builds at once are being built or waiting."""

    title = "Service unavailable"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, hint=f"retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


class ProofWork:
    """At most `slots` proofs at work and `waiting` more queued, `share` of them one
    caller's; counted until the work ends, not until its client stops waiting."""

    def __init__(self, slots: int = 1, waiting: int = 3, retry_after_s: float = 10.0) -> None:
        if slots < 1 or waiting < 0:
            raise ValueError("proof work needs at least one slot")
        self.places = slots + waiting
        self.share = max(1, self.places // 2)
        self.retry_after_s = retry_after_s
        self._by_caller: dict[str, int] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="donjon-proofs")

    @property
    def admitted(self) -> int:
        """Proofs at work or waiting now."""
        with self._lock:
            return sum(self._by_caller.values())

    async def run(self, caller: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on the proof threads, for `caller`; ProofsBusy if every
        place is taken, or `caller` holds its share of them."""
        with self._lock:
            mine = self._by_caller.get(caller, 0)
            if sum(self._by_caller.values()) >= self.places or mine >= self.share:
                held = "your" if mine >= self.share else "the node's"
                raise ProofsBusy(
                    f"{held} audit proofs (and exports) being built fill their places",
                    retry_after_s=self.retry_after_s,
                )
            self._by_caller[caller] = mine + 1
        release = functools.partial(self._release, caller)
        try:
            work = self._executor.submit(functools.partial(fn, *args, **kwargs))
        except RuntimeError:  # shut down
            release(None)
            raise
        work.add_done_callback(release)
        return await asyncio.wrap_future(work)

    def close(self) -> None:
        """Refuse new work and drop what waits (a proof at work runs to its end)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release(self, caller: str, _work: object) -> None:
        with self._lock:
            left = self._by_caller[caller] - 1
            if left:
                self._by_caller[caller] = left
            else:
                del self._by_caller[caller]
