"""What every detector finds, and what the learned ones hold, over one recorded stream.

A change that only makes the monitor cheaper must leave both as they were. This
feeds the stream of `tests/monitor/test_examine_equivalence.py` (24 simulated
hours of calls, deploys and key creations with anomalies injected, and denials,
runtime-policy blocks, OOM kills and egress refusals mixed in) to the node's
rules and learned detectors, twice per cap on subjects: plainly (each record to
each detector that reads it, ticking every 5 s of record time) and through the
engine (`Monitor`, batches of 1-16 records, a clock that runs ahead of the
records, ticks at random). Caps of 7 and 3 subjects (2 and 4 pairs for
`first_seen`) make the tables evict. It prints a digest of each run's findings
and of the detectors' state afterwards (each table's subjects in their order,
its evictions, every window's values and statistics, every pair), and can write
the whole of it as JSON.

    python bench/monitor_digest.py [--json FILE]

Run it with each tree's interpreter (`/other/.venv/bin/python bench/monitor_digest.py`):
the stream comes from this tree's tests, the detectors from the tree installed.
Equal digests: the same findings, in the same order, and the same state. The runs
are tests/monitor/digest_support.py's (`test_examine_golden.py` pins the digests of
the cap of 7).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from monitor.digest_support import CAPS, digest, runs
from monitor.test_examine_equivalence import _stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every finding and the state here")
    args = parser.parse_args()
    records = _stream()
    found_all: dict[str, Any] = {}
    for cap, pairs in CAPS:
        found_all.update(runs(records, cap, pairs))
    for name, (found, state) in found_all.items():
        print(f"{name}: {len(found)} findings, digest {digest(found, state)}")
    if args.json:
        args.json.write_text(json.dumps(found_all, sort_keys=True))


if __name__ == "__main__":
    main()
