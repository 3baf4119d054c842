"""Scanning time per 10,000 lines: Donjon beside Bandit, on the same files, in one run.

The files are real Python: a fixed set of standard-library modules (HTTP, email,
archives, subprocess...) copied into a temporary directory, about 20,000 lines.
Each tool runs `--repeat` times, interleaved; the best time counts. Printed: seconds per
10,000 lines for each, and Donjon's time as a multiple of Bandit's (under 1.0 is faster),
also with the advisory database's loading added (from its digest-keyed cache, as every
scan after the first pays it; the PyPA records beside the repository, or
$DONJON_ADVISORIES); then both tools' precision and recall on the code-rule corpus.

    .venv/bin/python bench/bench_scan.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from bench_realworld import advisories_path

from donjon._subprocess import run
from donjon.scan import AdvisoryDB, scan_path
from donjon.scan.project import discover
from donjon.scan.scanners.code import CodeScanner

MODULES = [
    "http/server.py",
    "http/client.py",
    "http/cookiejar.py",
    "urllib/request.py",
    "urllib/parse.py",
    "email/message.py",
    "email/utils.py",
    "json/decoder.py",
    "json/encoder.py",
    "subprocess.py",
    "tarfile.py",
    "shutil.py",
    "tempfile.py",
    "smtplib.py",
    "ftplib.py",
    "logging/__init__.py",
    "logging/handlers.py",
]


def collect(target: Path) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    lines = 0
    for rel in MODULES:
        source = stdlib / rel
        dest = target / rel.replace("/", "_")
        shutil.copyfile(source, dest)
        lines += len(dest.read_text(encoding="utf-8").splitlines())
    return lines


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - started)
    return best, count


def interleaved(repeat: int, fns: dict[str, Callable[[], int]]) -> dict[str, tuple[float, int]]:
    """Best time of each, running them in turn `repeat` times (load drifts hit all alike)."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            seconds, count = best_of(1, fn)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, count)
    return best


def bandit_library(target: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bandit.core import config, manager

        mgr = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
        mgr.discover_files([str(target)], recursive=True)
        mgr.run_tests()
    return len(mgr.get_issue_list())


def bandit_cli(target: Path) -> int:
    out = run(
        [sys.executable, "-m", "bandit", "-q", "-r", str(target), "-f", "json", "--exit-zero"]
    )
    return out.count('"test_id"')


CORPUS = Path(__file__).resolve().parents[1] / "tests" / "scan" / "corpus"
_MARK = re.compile(r"#\s*expect:\s*(DJ-PY-0\d\d)")


def corpus_comparison() -> None:
    """Precision and recall of both tools on the code-rule corpus (DJ-PY-001..010).

    A marked line is a vulnerability; a tool's finding on a marked line is a hit, on
    any other line a false alarm (Bandit's ids differ from Donjon's, so any finding
    on the line counts for either tool).
    """
    marked: set[tuple[str, int]] = set()
    files: list[Path] = []
    for case in sorted(CORPUS.glob("DJ-PY-0*/*")):
        for file in sorted(case.rglob("*.py")):
            files.append(file)
            for number, line in enumerate(file.read_text().splitlines(), start=1):
                if _MARK.search(line):
                    marked.add((str(file), number))
    donjon: set[tuple[str, int]] = set()
    for case in sorted(CORPUS.glob("DJ-PY-0*/*")):
        for f in scan_path(case).findings:
            donjon.add((str(case / f.location.path), f.location.line))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bandit.core import config, manager

        mgr = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
        mgr.discover_files([str(f) for f in files])
        mgr.run_tests()
    bandit = {(str(Path(i.fname).resolve()), int(i.lineno)) for i in mgr.get_issue_list()}
    print(f"code-rule corpus: {len(files)} files, {len(marked)} vulnerable lines")
    for name, found in (("donjon", donjon), ("bandit (all tests)", bandit)):
        hits = len(found & marked)
        alarms = len(found - marked)
        precision = hits / len(found) if found else 1.0
        print(
            f"  {name:<20} recall {hits / len(marked):6.1%}  precision {precision:6.1%}  "
            f"({hits} found, {len(marked) - hits} missed, {alarms} false alarms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = advisories_path(None)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "code"
        target.mkdir()
        lines = collect(target)
        per10k = 10_000 / lines
        cache = Path(tmp) / "advisory-cache"

        def donjon_code() -> int:
            return len(CodeScanner().scan(discover(target)).findings)

        def donjon_full() -> int:
            return len(scan_path(target).findings)

        def donjon_with_db() -> int:
            db = AdvisoryDB.load(source, cache_dir=cache) if source is not None else None
            return len(scan_path(target, advisories=db).findings)

        bandit_library(target)  # warm imports and plugin loading for every contender
        donjon_with_db()  # ...and writes the advisory cache
        runs = interleaved(
            args.repeat,
            {
                "donjon code rules (own taint engine)": donjon_code,
                "donjon full scan (code+bandit checks+secrets+manifest)": donjon_full,
                "donjon full scan + advisory load (cached)": donjon_with_db,
                "bandit library (all default tests)": lambda: bandit_library(target),
                "bandit CLI (subprocess, incl. start-up)": lambda: bandit_cli(target),
            },
        )
    print(f"{len(MODULES)} files, {lines} lines of Python; best of {args.repeat} runs")
    print(f"advisories: {source or 'none found'}")
    for name, (seconds, found) in runs.items():
        print(f"  {name:<56} {seconds * per10k:6.3f} s/10k lines  ({found} findings)")
    base = runs["bandit library (all default tests)"][0]
    for name in (
        "donjon code rules (own taint engine)",
        "donjon full scan (code+bandit checks+secrets+manifest)",
        "donjon full scan + advisory load (cached)",
    ):
        print(f"  ratio {name.split(' (')[0]} / bandit library: {runs[name][0] / base:.2f}x")
    corpus_comparison()


if __name__ == "__main__":
    main()
