"""The order test files are handed to the workers: the longest first.

pytest-xdist's `--dist loadfile` hands out whole files as workers come free, in the
order it is given (scripts/test.sh passes `--no-loadscope-reorder`; by default xdist
puts the files with the most tests first, which leaves the long attack files, a few
tests each, for the end, where one worker ran them while the other idled). Longest
first, the last files handed out are short ones, and both cores stay busy to the
end.

Each file's length is what it took in a recorded run (`durations.json`, seconds, the
setup, call and teardown of its tests summed); a file not there yet counts as the
median of those that are. Only the order depends on it: a stale table costs time,
never a test. `DONJON_RECORD_DURATIONS=1 ./scripts/test.sh` writes the table anew
from the run, keeping the files it did not run.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TABLE = HERE / "durations.json"
#: Set (to anything but "" or "0") to write `TABLE` anew from this run.
RECORD = "DONJON_RECORD_DURATIONS"


def _module(path: Path) -> str:
    return path.resolve().relative_to(HERE).as_posix()


def load_table(table: Path = TABLE) -> dict[str, float]:
    """File (relative to tests/) -> seconds; empty if there is no table."""
    try:
        data = json.loads(table.read_text())
    except FileNotFoundError:
        return {}
    return {str(k): float(v) for k, v in data.items()}


def longest_first(items: list[pytest.Item], table: dict[str, float]) -> None:
    """Reorder `items` in place: files by recorded length, longest first; the tests of
    one file keep their order, and files of equal length keep theirs."""
    if not table:
        return
    default = statistics.median(table.values())
    weight: dict[Path, float] = {}
    for item in items:
        if item.path not in weight:
            weight[item.path] = table.get(_module(item.path), default)
    items.sort(key=lambda item: -weight[item.path])  # stable: a file's tests stay in order


class Recorder:
    """Sums each file's test durations as the reports arrive (on xdist's controller, the
    workers' reports) and writes the table when the session ends."""

    def __init__(self, table: Path = TABLE) -> None:
        self.table = table
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @staticmethod
    def wanted() -> bool:
        return os.environ.get(RECORD, "") not in ("", "0")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = report.nodeid.split("::", 1)[0].removeprefix("tests/")
        self.seconds[module] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput") or not self.seconds:
            return  # an xdist worker: the controller has every report
        merged = load_table(self.table)
        merged.update({k: round(v, 1) for k, v in self.seconds.items()})
        tmp = self.table.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")
        tmp.replace(self.table)
