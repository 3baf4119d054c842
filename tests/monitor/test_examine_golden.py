"""The detectors' findings and state over a recorded stream, pinned to what they were.

`test_examine_equivalence.py` compares the engine with the plain examination; both
feed the same baselines, so a baseline that miscounts (a call counted twice, a subject
left out, a window pushed out of turn, a table's order changed) would fail neither.
This pins the digest of both runs (digest_support.py: every finding in order, and
every table, window, statistic and pair afterwards) with a cap of 7 subjects, so the
tables evict all the time, to the digests the monitor gave before its hot paths were
cut (main at fd024dd, `bench/monitor_digest.py`). A change that means to find other
things changes these digests on purpose, and says why.
"""

from __future__ import annotations

import pytest

from monitor.digest_support import digest, runs
from monitor.test_examine_equivalence import _stream

#: `bench/monitor_digest.py` at fd024dd: run name -> (findings, digest).
PINNED = {
    "plain, cap 7": (6149, "94d99f159de67708"),
    "engine, cap 7": (6143, "fd5b09623764bf6d"),
}


@pytest.mark.slow
def test_findings_and_state_are_what_they_were() -> None:
    """The plain run and the engine's find what they found, and hold what they held."""
    found = runs(_stream(), 7, 4)
    assert {name: (len(f), digest(f, s)) for name, (f, s) in found.items()} == PINNED
