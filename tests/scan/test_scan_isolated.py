"""The deploy-time scan runs in a limited helper process: limits fail closed, the caller lives."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.scan import ScanError
from donjon.scan.isolated import IsolatedScanner, ScanLimitExceeded, ScanLimits

INJECTION = "import os\ndef handler(event, context):\n    return os.system(event['cmd'])\n"


def _heavy(path: Path) -> Path:
    """A module that takes the analysis seconds of CPU before its work budget runs out."""
    params = ", ".join(f"v{i}=0" for i in range(500))
    body = ", ".join(f"v{i}" for i in range(500))
    calls = "\n".join(f"    r{i} = _f(event, event, event)" for i in range(1500))
    path.mkdir()
    (path / "main.py").write_text(f"def _f(a, b, c, {params}):\n    return [a, b, c, {body}]\n\n"
                                  f"def handler(event, context):\n{calls}\n")
    return path


@pytest.fixture
def scanner(shared_advisories: Path) -> Iterator[IsolatedScanner]:
    s = IsolatedScanner(shared_advisories)
    s.start()
    try:
        yield s
    finally:
        s.close()


def test_report_comes_back_whole(scanner: IsolatedScanner, tmp_path: Path) -> None:
    """Findings, their grades and taint paths survive the trip through JSON."""
    (tmp_path / "main.py").write_text(INJECTION)
    report = scanner.scan(tmp_path)
    [finding] = report.findings
    assert finding.rule_id == "DJ-PY-001" and finding.taint_path
    assert report.advisories_loaded == scanner.advisories_loaded > 1000


def test_scan_errors_are_passed_on(scanner: IsolatedScanner, tmp_path: Path) -> None:
    """What the scan refuses (a missing target) is a ScanError with its own message."""
    with pytest.raises(ScanError, match="does not exist"):
        scanner.scan(tmp_path / "missing")


def test_memory_limit_fails_closed(tmp_path: Path) -> None:
    """A scan that needs more memory than allowed is refused, and the next scan works."""
    s = IsolatedScanner(limits=ScanLimits(memory_mb=16))
    s.start()
    try:
        big = tmp_path / "big"
        big.mkdir()
        (big / "main.py").write_text("".join(f"x{i} = [{i}, 's{i}']\n" for i in range(60_000)))
        with pytest.raises(ScanLimitExceeded, match="memory"):
            s.scan(big)
        small = tmp_path / "small"
        small.mkdir()
        (small / "main.py").write_text(INJECTION)
        assert len(s.scan(small).findings) == 1
    finally:
        s.close()


def test_cpu_limit_fails_closed(tmp_path: Path) -> None:
    """A scan past its CPU time is killed and the deploy refused with a clear message."""
    s = IsolatedScanner(limits=ScanLimits(cpu_s=1, timeout_s=120))
    s.start()
    try:
        with pytest.raises(ScanLimitExceeded, match="CPU time"):
            s.scan(_heavy(tmp_path / "heavy"))
    finally:
        s.close()


def test_a_dead_helper_is_restarted(scanner: IsolatedScanner, tmp_path: Path) -> None:
    """If the helper dies, at most the scan that finds it dead fails (closed); the next one
    runs in a new helper."""
    pid = scanner.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    (tmp_path / "main.py").write_text(INJECTION)
    try:
        report = scanner.scan(tmp_path)  # the helper may already be seen dead and replaced
    except ScanLimitExceeded:
        report = scanner.scan(tmp_path)
    assert len(report.findings) == 1
    assert scanner.pid not in (None, pid)
