"""Robust statistics for the learned baselines: median and MAD over a bounded window.

A baseline is the last `size` values of one series (calls per minute of one
principal, the durations of one function version, ...), kept in a deque, so a
series costs at most `size` floats whatever the traffic. Its centre is the
median and its spread the median absolute deviation scaled to a normal
standard deviation (1.4826 x MAD): both ignore up to half the window being
outliers, where a mean and a standard deviation are dragged by a single one.

A value is anomalous above its upper band::

    median + max(k x sigma, poisson_k x sqrt(median), rel x median, abs_min)

The floors keep a flat series (MAD 0: a function that never fails, a key that
calls once a minute) from alerting on the smallest change: counts vary at
least as a Poisson process does, and a change must be large in proportion and
in absolute terms too. Only the series' owner decides what is pushed: an
anomalous value is never pushed, so an attack does not become the norm
(Knative Security-Guard's weakness is that it keeps learning during one).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from donjon.errors import Error

__all__ = ["Band", "BaselineError", "Bounded", "RobustWindow"]

#: MAD x this estimates the standard deviation of normally distributed values.
MAD_TO_SIGMA = 1.4826

K = TypeVar("K")
V = TypeVar("V")


class BaselineError(Error):
    """A baseline was configured with values it cannot work with."""

    title = "Invalid baseline settings"


@dataclass(frozen=True, slots=True)
class Band:
    """How far above its median a value must be to be anomalous, and when a series judges."""

    #: Scaled MADs above the median.
    k: float = 6.0
    #: Square roots of the median above it (for counts: Poisson noise); 0 to leave out.
    poisson_k: float = 0.0
    #: A fraction of the median above it (1.0: at least twice the median).
    rel: float = 0.0
    #: An absolute amount above it, in the series' unit.
    abs_min: float = 0.0
    #: Values kept (the window); older ones fall out.
    size: int = 120
    #: Values needed before the series judges (learning).
    min_history: int = 30

    def __post_init__(self) -> None:
        for name in ("k", "poisson_k", "rel", "abs_min"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise BaselineError(
                    f"baseline {name} must be a finite number >= 0, not {value!r}",
                    hint="see docs/security.md, 'Learned baselines'",
                )
        if not 1 <= self.min_history <= self.size:
            raise BaselineError(
                f"baseline min_history {self.min_history} must be 1..size ({self.size})",
                hint="a series cannot need more values than it keeps",
            )
        if self.k == self.poisson_k == self.rel == self.abs_min == 0:
            raise BaselineError(
                "a baseline band of zero width flags every value above the median",
                hint="set k, and a floor (poisson_k, rel or abs_min)",
            )


class RobustWindow:
    """The last `band.size` values of one series, their median, MAD and upper band."""

    __slots__ = (
        "_band",
        "_ordered",
        "_refresh",
        "_stale",
        "_stats",
        "_values",
        "current",
        "learned",
    )

    def __init__(self, band: Band) -> None:
        self._band = band
        self._values: deque[float] = deque(maxlen=band.size)
        #: The same values, in order.
        self._ordered: list[float] = []
        #: The statistics (median, sigma, upper) as last computed.
        self._stats: tuple[float, float, float] | None = None
        #: The same while they stand, None once they are to be computed again (`fresh()`):
        #: when a twentieth of the window is new since they were (sorting per value would
        #: cost more than the call being judged), and always while the series is still
        #: learning. Kept so by `push`, read by the baselines for every call without a
        #: method's frame (`current`, else `fresh()`).
        self.current: tuple[float, float, float] | None = None
        #: Values pushed since the statistics were computed.
        self._stale = 0
        self._refresh = max(1, band.size // 20)
        #: Whether the series has enough values to judge (`band.min_history`): set by
        #: `push`, read for every call by every baseline (an attribute, not a property).
        self.learned = False

    def __len__(self) -> int:
        return len(self._values)

    def push(self, value: float) -> None:
        """Add a value the owner found normal."""
        value = float(value)
        values, ordered = self._values, self._ordered
        if len(values) == values.maxlen:  # the oldest falls out
            del ordered[bisect.bisect_left(ordered, values[0])]
        values.append(value)
        bisect.insort(ordered, value)
        self._stale += 1
        if self._stale >= self._refresh:  # (while learning, `current` is None already)
            self.current = None
        if not self.learned:
            self.learned = len(values) >= self._band.min_history
            if self.learned and self._stale < self._refresh:  # (those read while learning)
                self.current = self._stats

    def push_many(self, value: float, count: int) -> None:
        """Add `count` copies of `value` (quiet windows), at most a window's worth."""
        count = min(count, self._band.size)
        if count <= 0:
            return
        self._values.extend([float(value)] * count)
        self._ordered = sorted(self._values)
        self._stale += count
        self.learned = len(self._values) >= self._band.min_history
        fresh = self.learned and self._stale < self._refresh
        self.current = self._stats if fresh else None

    def fresh(self) -> tuple[float, float, float]:
        """(median, sigma, upper), computed now: what a read does when `current` is None."""
        values = self._ordered
        median = _middle(values)
        sigma = MAD_TO_SIGMA * _median_deviation(values, median)
        band = self._band
        upper = median + max(
            band.k * sigma,
            band.poisson_k * math.sqrt(max(median, 0.0)),
            band.rel * median,
            band.abs_min,
        )
        stats = self._stats = (median, sigma, upper)
        self._stale = 0
        self.current = stats if self.learned else None
        return stats

    def stats(self) -> tuple[float, float]:
        """(median, sigma = 1.4826 x MAD) of the window; (0, 0) when empty."""
        stats = self.current
        if stats is None:
            stats = self.fresh()
        return stats[0], stats[1]

    def upper(self) -> float:
        """The value above which a new value is anomalous: the median plus the largest of
        k sigma, poisson_k x sqrt(median), rel x median and abs_min."""
        stats = self.current
        if stats is None:
            stats = self.fresh()
        return stats[2]

    def is_anomalous(self, value: float) -> bool:
        """Whether `value` is above the band of a learned series (never while learning)."""
        if not self.learned:
            return False
        stats = self.current
        if stats is None:
            stats = self.fresh()
        return value > stats[2]

    def judge(self, value: float) -> bool:
        """`is_anomalous(value)`, and `push(value)` if it is not (one call: the duration
        baseline judges every call's value this way)."""
        if self.learned:
            stats = self.current  # (`is_anomalous`, inline)
            if stats is None:
                stats = self.fresh()
            if value > stats[2]:
                return True
        self.push(value)
        return False


def _middle(ordered: list[float]) -> float:
    """The median of sorted values (0 for none)."""
    n = len(ordered)
    if n == 0:
        return 0.0
    half = n // 2
    return ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2


def _median_deviation(ordered: list[float], median: float) -> float:
    """The median of `abs(v - median)` over sorted values, without sorting them again.

    The deviations of the values below the median, read downwards, and of the rest,
    read upwards, are two ascending runs (`median - v` is exactly `abs(v - median)`
    there). The middle one (the lower of the two middle ones for an even count) is
    found by bisecting how many of the smallest come from the first run; the upper
    middle one is then the smaller of each run's next (one bisection, not two: this
    runs at every refresh of every window).
    """
    n = len(ordered)
    if n == 0:
        return 0.0
    split = bisect.bisect_left(ordered, median)  # ordered[:split] < median <= ordered[split:]
    # The i-th smallest deviation of the values below is `median - ordered[split - 1 - i]`,
    # of the rest `ordered[split + i] - median`. The `k + 1` smallest of both are the first
    # `i` of the values below and the first `j` of the rest, `i + j = k + 1`.
    above = n - split
    k = (n - 1) // 2  # the middle deviation's rank (0-based), the lower middle for even n
    lo, hi = max(0, k + 1 - above), min(k + 1, split)
    while True:
        i = (lo + hi) // 2
        j = k + 1 - i
        if (
            i < split
            and j > 0
            and ordered[split + j - 1] - median > median - ordered[split - 1 - i]
        ):
            lo = i + 1  # the rest's j-th is above the next from below: take more from below
        elif i > 0 and j < above and median - ordered[split - i] > ordered[split + j] - median:
            hi = i - 1  # the other way round
        else:
            break
    middle = max(
        median - ordered[split - i] if i > 0 else -math.inf,
        ordered[split + j - 1] - median if j > 0 else -math.inf,
    )
    if n % 2:
        return middle
    following = min(  # the (k + 1)-th: the smaller of each run's next deviation
        median - ordered[split - 1 - i] if i < split else math.inf,
        ordered[split + j] - median if j < above else math.inf,
    )
    return (middle + following) / 2


class Bounded(Generic[K, V]):
    """A mapping of at most `cap` entries; the least recently used one goes first."""

    __slots__ = ("_cap", "_items", "evicted", "table")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise BaselineError(f"a cap of {cap} entries keeps nothing", hint="use 1 or more")
        self._cap = cap
        self._items: OrderedDict[K, V] = OrderedDict()
        #: The same entries, read on the hot path (`first_seen` looks up every call's
        #: principal and pairs; the baselines' own table is series.py's): `table.get(key)`,
        #: then `table.move_to_end(key)` if found, is `get` without a Python call; anything
        #: that adds an entry goes through `setdefault`.
        self.table = self._items
        #: Entries dropped to keep the cap (a busy node has more subjects than it keeps).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        """The keys, oldest use first (a copy: the table may change meanwhile)."""
        return iter(list(self._items))

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The entry for `key`, made (and the oldest entry dropped if full) if absent."""
        items = self._items
        value = items.get(key)
        if value is not None:  # (`get`, inline: every baseline looks up every call's subjects)
            items.move_to_end(key)
            return value
        value = items[key] = make()
        if len(items) > self._cap:
            items.popitem(last=False)
            self.evicted += 1
        return value

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def keys(self) -> list[K]:
        return list(self._items)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._items.items()))
