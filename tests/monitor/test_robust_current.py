"""`RobustWindow.current`: the statistics read without a method's frame are the ones the
window's reads compute, and are computed again exactly when they were before.

The baselines read `current` (else `fresh()`) for every call in place of `upper()` and
`stats()`. Its reference here is the window as it was before: statistics kept as last
computed, and computed again on a read when none were, when a twentieth of the window is
new since, or while the series is learning. The same operations go through both, and
every read, every statistic kept and every count of new values must agree.
"""

from __future__ import annotations

import random

from donjon.monitor.robust import Band, RobustWindow

#: A window of 40 (a refresh every 2 values) that judges after 10.
BAND = Band(k=3.0, abs_min=0.5, size=40, min_history=10)


class _Lazy(RobustWindow):
    """The reads as they were before `current`: the test on the kept statistics each time."""

    __slots__ = ()

    def _due(self) -> bool:
        return self._stats is None or self._stale >= self._refresh or not self.learned

    def stats(self) -> tuple[float, float]:
        stats = self.fresh() if self._due() else self._stats
        assert stats is not None
        return stats[0], stats[1]

    def upper(self) -> float:
        stats = self.fresh() if self._due() else self._stats
        assert stats is not None
        return stats[2]

    def judge(self, value: float) -> bool:
        if self.learned and self.upper() < value:
            return True
        self.push(value)
        return False


def _read(window: RobustWindow) -> tuple[float, float, float]:
    """What a baseline's hot path reads (baselines.py): `current`, else `fresh()`."""
    stats = window.current
    return stats if stats is not None else window.fresh()


def _state(window: RobustWindow) -> tuple[object, ...]:
    return (list(window._ordered), window._stats, window._stale, window.learned)


def test_current_is_what_the_lazy_reads_give_at_every_step() -> None:
    """Pushes, quiet windows, judgements and reads in a random order: the same answers and
    the same kept state as the lazy window's, and `current` is its statistics exactly when
    a read would not compute them again."""
    rnd = random.Random(7)  # noqa: S311 - a seeded test, not a secret
    for _ in range(40):
        fast, lazy = RobustWindow(BAND), _Lazy(BAND)
        for _ in range(300):
            op = rnd.random()
            value = rnd.choice((rnd.gauss(10.0, 2.0), 30.0, 0.0))
            if op < 0.35:
                fast.push(value)
                lazy.push(value)
            elif op < 0.4:
                count = rnd.randrange(0, 5)
                fast.push_many(value, count)
                lazy.push_many(value, count)
            elif op < 0.65:
                assert fast.judge(value) == lazy.judge(value)
            elif op < 0.8:
                assert fast.stats() == lazy.stats()
            elif op < 0.9:
                assert fast.upper() == lazy.upper()
            else:
                stats = _read(fast)
                assert (stats[0], stats[1]) == lazy.stats()
                assert stats[2] == lazy.upper()
            assert _state(fast) == _state(lazy)
            due = lazy._due()
            assert fast.current == (None if due else lazy._stats)


def test_the_statistics_read_while_learning_stand_once_it_has_learned() -> None:
    """A series that learns on a push keeps the statistics of its last read (as the lazy
    window did) until a twentieth of the window is new."""
    window, lazy = RobustWindow(BAND), _Lazy(BAND)
    for value in range(9):
        window.push(float(value))
        lazy.push(float(value))
    assert window.stats() == lazy.stats()  # read while learning: computed, not standing
    assert window.current is None
    window.push(100.0)
    lazy.push(100.0)  # learned now, one value new since the read
    assert window.learned
    assert window.current == lazy._stats
    assert window.upper() == lazy.upper()
    window.push(5.0)
    lazy.push(5.0)  # two new: computed again at the next read
    assert window.current is None
    assert _read(window)[2] == lazy.upper()
