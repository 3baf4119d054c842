"""The order test files are handed to the workers: the longest first.

pytest-xdist's `--dist loadfile` hands out whole files in the order it is given
(scripts/test.sh passes `--no-loadscope-reorder`; by default xdist puts the files with
the most tests first, which left the long attack files, a few tests each, for the end,
where one worker ran them while the others idled). Each worker starts with two files
and is sent its next while it still runs the last tests of the one before; longest
first, the files left at the end are short ones, and the cores stay busy to the end.

Each file's length is what it took in a recorded run (`durations.json`, seconds, the
setup, call and teardown of its tests summed); a file not there yet counts as the
median of those that are. Only the order depends on it: a stale or unreadable table
costs time, never a test. `DONJON_RECORD_DURATIONS=1 ./scripts/test.sh` writes the
table anew from a whole run that passed (a run of some files, or one that failed,
leaves it as it was).
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


def _module(path: Path) -> str | None:
    """`path` relative to tests/, the table's key; None for a file outside it."""
    try:
        return path.resolve().relative_to(HERE).as_posix()
    except ValueError:
        return None


def load_table(table: Path = TABLE) -> dict[str, float]:
    """File (relative to tests/) -> seconds; empty if there is no table or it is not one
    (a merge's conflict markers, say): the files then keep the order they were collected
    in."""
    try:
        data = json.loads(table.read_text())
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def longest_first(items: list[pytest.Item], table: dict[str, float]) -> None:
    """Reorder `items` in place: files by recorded length, longest first; the tests of
    one file keep their order, and files of equal length keep theirs."""
    if not table:
        return
    default = statistics.median(table.values())
    weight: dict[Path, float] = {}
    for item in items:
        if item.path not in weight:
            module = _module(item.path)
            weight[item.path] = default if module is None else table.get(module, default)
    items.sort(key=lambda item: -weight[item.path])  # stable: a file's tests stay in order


class Recorder:
    """Sums each file's test durations as the reports arrive (on xdist's controller, the
    workers' reports) and, after a whole run that passed, writes the table."""

    def __init__(self, config: pytest.Config, table: Path = TABLE) -> None:
        self.config = config
        self.table = table
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @staticmethod
    def wanted() -> bool:
        return os.environ.get(RECORD, "") not in ("", "0")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = _module(self.config.rootpath / report.nodeid.split("::", 1)[0])
        if module is not None:
            self.seconds[module] += report.duration

    def _whole_suite(self) -> bool:
        config = self.config
        asked = {(config.invocation_params.dir / a).resolve() for a in config.args}
        filtered = config.getoption("markexpr", "") or config.getoption("keyword", "")
        return asked in ({HERE}, {HERE.parent}) and not filtered

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(session.config, "workerinput") or not self.seconds:
            return  # an xdist worker: the controller has every report
        if exitstatus != 0 or not self._whole_suite():
            return  # some files' lengths, or a failed run's: the table stays as it was
        tmp = self.table.with_suffix(".tmp")
        lengths = {k: round(v, 1) for k, v in sorted(self.seconds.items())}
        tmp.write_text(json.dumps(lengths, indent=1) + "\n")
        tmp.replace(self.table)
