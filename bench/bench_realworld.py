"""Donjon beside Bandit on real, clean open-source serverless projects fetched from PyPI.

Each project in `PACKAGES` (pinned version and SHA-256) is fetched at bench time with
``pip download --no-deps --no-binary :all:`` (its sdist) into a cache outside the
repository (``--cache``, default ``$XDG_CACHE_HOME/donjon-bench``), checked against the
pinned digest, and unpacked there; nothing is copied into the repository. Later runs
use the cache and need no network. Then, per project, on the same files:

- Donjon's scan (`scan_path`, the engine the deploy gate runs) with the PyPA advisory
  database (``--advisories``, else ``$DONJON_ADVISORIES``, else ../shared/data/
  pypa-advisory-db beside the repository), and the gate's verdict under the default
  policy (high severity, medium or higher confidence), each gate-level finding listed;
- Bandit as a library, default configuration (every test), over the project's Python files.

Printed: Python lines, findings per 1,000 Python lines by severity for each tool (Donjon's
include its findings in non-Python files: the rate is conservative for Donjon), the
verdict, both tools' best time of ``--repeat`` runs (taken in turn), and totals with
Donjon's advisory loading added once (from its digest-keyed cache, and parsed).
``--json`` prints a machine-readable report instead.

    .venv/bin/python bench/bench_realworld.py [--repeat 3] [--json] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from donjon._subprocess import CommandError, run
from donjon.scan import AdvisoryDB, ScanPolicy, scan_path
from donjon.scan.model import ScanReport
from donjon.scan.project import discover

REPO = Path(__file__).resolve().parents[1]
FETCH_TIMEOUT_S = 600.0
_MARK = ".donjon-bench-sha256"


@dataclass(frozen=True)
class Package:
    """One project as published on PyPI: its distribution file and that file's SHA-256."""

    name: str
    version: str
    filename: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.name}-{self.version}"


PACKAGES = (
    Package(
        "aws-lambda-powertools",
        "3.37.0",
        "aws_lambda_powertools-3.37.0.tar.gz",
        "eec85df216ef5e99efd2cbed01ddeebe34585b650625dabc96fdc5b471ef8fcf",
    ),
    Package(
        "chalice",
        "1.34.0",
        "chalice-1.34.0.tar.gz",
        "38a96338e6592c5605e3da2ebd29c8d402ad5cbcbac635d2ef3ad4024bbc8041",
    ),
    Package(
        "mangum",
        "0.22.0",
        "mangum-0.22.0.tar.gz",
        "701936891aaed8ed66479b871c2bda87ba288fd01c7d5dd6ba6c8e9ba1c239d1",
    ),
    Package(
        "zappa",
        "0.63.0",
        "zappa-0.63.0.tar.gz",
        "1ab6e245ae22bb5998b6083b5c15ccab023615b012c3c7f4c6a08a62cef37c5d",
    ),
    Package(
        "serverless-wsgi",
        "3.0.5",
        "serverless-wsgi-3.0.5.tar.gz",
        "c098e1bcfefa9c905a66dd8247f9cc8cb505dd7f791faad1a063ee819cdf057b",
    ),
    Package(
        "apig-wsgi",
        "2.20.0",
        "apig_wsgi-2.20.0.tar.gz",
        "9c6aea1e96688b5848efb409ae3c3afb4ed2b162cd71dab683b1466a7387b964",
    ),
    Package(
        "aws-xray-sdk",
        "2.15.0",
        "aws_xray_sdk-2.15.0.tar.gz",
        "794381b96e835314345068ae1dd3b9120bd8b4e21295066c37e8814dbb341365",
    ),
    Package(
        "aws-lambda-builders",
        "1.68.0",
        "aws_lambda_builders-1.68.0.tar.gz",
        "89b23de84ac51b917b331b39eb0f52954f60305af2f5cdf63deec051b063e679",
    ),
    Package(
        "aws-embedded-metrics",
        "3.5.0",
        "aws_embedded_metrics-3.5.0.tar.gz",
        "4b5f87d00dd7683fc7651a90f00055b460a1dbce3ffc2fc21698902c9d2e3bea",
    ),
)


class BenchError(Exception):
    """The bench cannot go on; the message says why and what to do."""


# -- fetching -------------------------------------------------------------------------------


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "donjon-bench"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(missing: list[Package], dist: Path) -> None:
    """One `pip download` for every missing archive, with the pinned hashes required."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        for pkg in missing:
            req.write(f"{pkg.name}=={pkg.version} --hash=sha256:{pkg.sha256}\n")
    try:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--require-hashes",
                "--timeout",
                "30",
                "--retries",
                "1",
                "-d",
                dist,
                "-r",
                req.name,
            ],
            timeout=FETCH_TIMEOUT_S,
        )
    except CommandError as e:
        names = ", ".join(p.label for p in missing)
        raise BenchError(
            f"could not fetch {names} from PyPI, and the cache {dist.parent} has no copy.\n"
            f"  pip said: {e.message.strip().splitlines()[-1] if e.message.strip() else e}\n"
            "  Run once with access to PyPI (or point --cache at a cache filled elsewhere)."
        ) from e
    finally:
        os.unlink(req.name)


def _safe_members(archive: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Regular files and directories inside `dest` only: no links, devices or `..`."""
    members = []
    for member in archive.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest):
            continue
        members.append(member)
    return members


def _unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    root = dest.resolve()
    if archive.name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir() and (root / info.filename).resolve().is_relative_to(root):
                    zf.extract(info, root)
        return
    with tarfile.open(archive) as tf:
        for member in _safe_members(tf, root):
            member.mode = 0o755 if member.isdir() else 0o644
            tf.extract(member, root, set_attrs=False)


def fetch(packages: tuple[Package, ...], cache: Path, log: Callable[[str], None]) -> list[Path]:
    """The unpacked source directory of each package; downloads what the cache lacks."""
    dist, src = cache / "dist", cache / "src"
    dist.mkdir(parents=True, exist_ok=True)
    src.mkdir(parents=True, exist_ok=True)

    def unpacked(pkg: Package) -> Path:
        return src / pkg.label

    def cached(pkg: Package) -> bool:
        mark = unpacked(pkg) / _MARK
        return mark.is_file() and mark.read_text().strip() == pkg.sha256

    missing = [p for p in packages if not cached(p) and not (dist / p.filename).is_file()]
    if missing:
        log(f"fetching {len(missing)} sdist(s) from PyPI into {dist} ...")
        _download(missing, dist)
    out = []
    for pkg in packages:
        if not cached(pkg):
            archive = dist / pkg.filename
            got = _sha256(archive) if archive.is_file() else "(missing)"
            if got != pkg.sha256:
                raise BenchError(
                    f"{archive}: SHA-256 {got}, expected {pkg.sha256}; delete it and run again"
                )
            shutil.rmtree(unpacked(pkg), ignore_errors=True)
            with tempfile.TemporaryDirectory(dir=src) as tmp:
                _unpack(archive, Path(tmp) / "x")
                Path(tmp, "x", _MARK).write_text(pkg.sha256 + "\n")
                Path(tmp, "x").rename(unpacked(pkg))
        entries = [e for e in unpacked(pkg).iterdir() if e.name != _MARK]
        # An sdist holds one top directory (name-version/): scan inside it.
        out.append(entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked(pkg))
    return out


# -- scanning -------------------------------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def bandit_scan(files: list[str]) -> list[Any]:
    """Bandit as a library, default configuration (every test), on `files`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bandit.core import config, manager

        mgr = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
        mgr.discover_files(files)
        mgr.run_tests()
    return list(mgr.get_issue_list())


def advisories_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    if os.environ.get("DONJON_ADVISORIES"):
        return Path(os.environ["DONJON_ADVISORIES"])
    shared = REPO.parent / "shared" / "data" / "pypa-advisory-db"
    return shared if shared.is_dir() else None


def measure(pkg: Package, root: Path, db: AdvisoryDB | None, repeat: int) -> dict[str, Any]:
    project = discover(root)
    files = [str(f.path) for f in project.python]
    py_lines = sum(len(f.lines) for f in project.python)
    donjon_s = bandit_s = float("inf")
    for _ in range(repeat):  # in turn, so that the machine's load drifts hit both alike
        seconds, report = best_of(1, lambda: scan_path(root, advisories=db))
        donjon_s = min(donjon_s, seconds)
        seconds, issues = best_of(1, lambda: bandit_scan(files))
        bandit_s = min(bandit_s, seconds)
    assert isinstance(report, ScanReport)
    gate = report.blocking(ScanPolicy())
    donjon = Counter(f.severity.name.lower() for f in report.findings)
    bandit = Counter(str(i.severity).lower() for i in issues)
    return {
        "project": pkg.label,
        "sha256": pkg.sha256,
        "python_files": len(files),
        "python_lines": py_lines,
        "all_lines": report.lines_scanned,
        "donjon": {
            "findings": len(report.findings),
            "by_severity": dict(donjon),
            "by_rule": dict(Counter(f.rule_id for f in report.findings)),
            "gate": "refuse" if gate else "pass",
            "gate_findings": [
                {
                    "path": f.location.path,
                    "line": f.location.line,
                    "rule": f.rule_id,
                    "message": f.message,
                }
                for f in gate
            ],
            "seconds": round(donjon_s, 3),
        },
        "bandit": {
            "findings": len(issues),
            "by_severity": dict(bandit),
            "by_test": dict(Counter(str(i.test_id) for i in issues)),
            "seconds": round(bandit_s, 3),
        },
    }


# -- report ---------------------------------------------------------------------------------

_SEV = ("low", "medium", "high", "critical")


def _rates(counts: dict[str, int], lines: int, levels: tuple[str, ...]) -> str:
    return "/".join(f"{1000 * counts.get(s, 0) / max(lines, 1):.2f}" for s in levels)


def print_table(result: dict[str, Any]) -> None:
    rows = result["projects"]
    print(
        f"{len(rows)} projects, {result['totals']['python_lines']:,} lines of Python "
        f"({result['totals']['all_lines']:,} text lines in all); best of {result['repeat']} "
        f"runs; {result['date']}, {result['machine']}"
    )
    adv = result["advisories"]
    print(
        f"advisories: {adv['count']} records from {adv['source']}: parsed in "
        f"{adv['parse_s']:.2f} s, from the cache in {adv['load_s']:.2f} s\n"
    )
    head = (
        f"{'project':<28} {'py lines':>8}  {'Donjon L/M/H/C per 1k':<24} {'gate':<7}"
        f"{'Bandit L/M/H per 1k':<20} {'Donjon s':>8} {'Bandit s':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in [*rows, result["totals"]]:
        d, b = r["donjon"], r["bandit"]
        print(
            f"{r['project']:<28} {r['python_lines']:>8,}  "
            f"{_rates(d['by_severity'], r['python_lines'], _SEV):<24} {d['gate']:<7}"
            f"{_rates(b['by_severity'], r['python_lines'], _SEV[:3]):<20} "
            f"{d['seconds']:>8.2f} {b['seconds']:>8.2f}"
        )
    t = result["totals"]
    print(
        f"\nDonjon / Bandit time: {t['ratio_scan']:.2f}x scanning only, "
        f"{t['ratio_with_load']:.2f}x with the advisory loading (cached) added once, "
        f"{t['ratio_with_parse']:.2f}x with the parsing instead (under 1.0: Donjon is faster)"
    )
    print("\ngate-level findings (high severity, medium or higher confidence):")
    for r in rows:
        for g in r["donjon"]["gate_findings"]:
            print(f"  {r['project']}: {g['path']}:{g['line']} {g['rule']}  {g['message'][:70]}")
    if not any(r["donjon"]["gate_findings"] for r in rows):
        print("  none")


def totals(rows: list[dict[str, Any]], load_s: float, parse_s: float) -> dict[str, Any]:
    def add(tool: str, key: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for r in rows:
            out.update(r[tool][key])
        return out

    donjon_s = sum(r["donjon"]["seconds"] for r in rows)
    bandit_s = sum(r["bandit"]["seconds"] for r in rows)
    refused = sum(r["donjon"]["gate"] == "refuse" for r in rows)
    return {
        "project": "total",
        "python_files": sum(r["python_files"] for r in rows),
        "python_lines": sum(r["python_lines"] for r in rows),
        "all_lines": sum(r["all_lines"] for r in rows),
        "donjon": {
            "findings": sum(r["donjon"]["findings"] for r in rows),
            "by_severity": dict(add("donjon", "by_severity")),
            "gate": f"{refused}/{len(rows)}",
            "gate_findings": sum(len(r["donjon"]["gate_findings"]) for r in rows),
            "seconds": round(donjon_s, 3),
        },
        "bandit": {
            "findings": sum(r["bandit"]["findings"] for r in rows),
            "by_severity": dict(add("bandit", "by_severity")),
            "seconds": round(bandit_s, 3),
        },
        "ratio_scan": round(donjon_s / bandit_s, 3) if bandit_s else 0.0,
        "ratio_with_load": round((donjon_s + load_s) / bandit_s, 3) if bandit_s else 0.0,
        "ratio_with_parse": round((donjon_s + parse_s) / bandit_s, 3) if bandit_s else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; best counts")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    parser.add_argument("--cache", type=Path, default=None, help="where sdists are kept")
    parser.add_argument("--advisories", type=Path, default=None, help="OSV records")
    parser.add_argument("--only", action="append", default=[], help="project name (repeatable)")
    args = parser.parse_args()
    logging.getLogger("bandit").setLevel(logging.ERROR)  # its "Test in comment" chatter

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    chosen = tuple(p for p in PACKAGES if not args.only or p.name in args.only)
    cache = args.cache or default_cache()
    try:
        roots = fetch(chosen, cache, log)
    except BenchError as e:
        log(f"bench_realworld: {e}")
        return 2
    db, parse_s, load_s, source = None, 0.0, 0.0, advisories_path(args.advisories)
    if source is not None:
        # Parsed from the source (a first start), then from the digest-keyed cache
        # (every later `donjon scan` or node start): the second is what a scan pays.
        parse_s, _ = best_of(1, lambda: AdvisoryDB.load(source))
        AdvisoryDB.load(source, cache_dir=cache / "advisories")
        load_s, db = best_of(
            max(args.repeat, 1), lambda: AdvisoryDB.load(source, cache_dir=cache / "advisories")
        )
    bandit_scan([])  # import Bandit and load its plugins once, outside the timings
    rows = []
    for pkg, root in zip(chosen, roots, strict=True):
        log(f"scanning {pkg.label} ...")
        rows.append(measure(pkg, root, db, max(args.repeat, 1)))
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "repeat": max(args.repeat, 1),
        "advisories": {
            "source": str(source) if source else "none",
            "count": len(db) if db is not None else 0,
            "parse_s": round(parse_s, 3),
            "load_s": round(load_s, 3),
        },
        "projects": rows,
        "totals": totals(rows, load_s, parse_s),
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
