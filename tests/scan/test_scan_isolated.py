"""The deploy-time scan runs in a limited helper process: limits fail closed, the caller lives."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.scan import ScanError, scan_path
from donjon.scan.isolated import HELPER_ENV, IsolatedScanner, ScanLimitExceeded, ScanLimits
from harness import COVERAGE_VARS

#: Coverage's variables, which the helpers of these tests get (`environ`) so that a
#: coverage run measures the helper (a node's gets HELPER_ENV's alone).
MEASURED = {k: v for k in COVERAGE_VARS if (v := os.environ.get(k)) is not None}

INJECTION = "import os\ndef handler(event, context):\n    return os.system(event['cmd'])\n"


def _heavy(path: Path) -> Path:
    """A module the analysis takes seconds of CPU over (about 4 s here), all within its
    work budget: 30,000 plain statements, each cheap, so only the CPU limit can stop it."""
    lines = "\n".join(f"    x{i} = str(event.get('k{i}')) + 'a'" for i in range(30_000))
    path.mkdir()
    (path / "main.py").write_text(f"def handler(event, context):\n{lines}\n    return x1\n")
    return path


@pytest.fixture(scope="module")
def scanner(shared_advisories: Path, advisory_cache: Path) -> Iterator[IsolatedScanner]:
    """One helper for the module (each loads the advisory snapshot, seconds of CPU); the
    test that kills it leaves a restarted one behind, as the scanner promises."""
    s = IsolatedScanner(shared_advisories, cache_dir=advisory_cache, environ=MEASURED)
    s.start()
    try:
        yield s
    finally:
        s.close()


def test_the_helper_is_given_none_of_the_nodes_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The helper reads untrusted bundles: of the node's environment it gets only
    isolated.HELPER_ENV and what its `environ` adds (the other tests here add coverage's),
    not a database URL's password or cloud keys."""
    monkeypatch.setenv("DONJON_DATABASE_URL", "postgresql://donjon:hunter2@db/donjon")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    helper = IsolatedScanner(environ={"DONJON_SCAN_PROBE": "1"})  # no advisories to load
    helper.start()
    try:
        assert helper.pid is not None
        raw = Path(f"/proc/{helper.pid}/environ").read_bytes()
    finally:
        helper.close()
    seen = dict(v.split("=", 1) for v in raw.decode().split("\0") if v)
    given = {k: os.environ[k] for k in HELPER_ENV if k in os.environ}
    assert seen == {**given, "DONJON_SCAN_PROBE": "1"}  # and what `environ` adds
    assert seen["TMPDIR"] == str(tmp_path)
    assert "hunter2" not in raw.decode() and "canary-secret" not in raw.decode()


def test_report_comes_back_whole(scanner: IsolatedScanner, tmp_path: Path) -> None:
    """Findings, their grades and taint paths survive the trip through JSON."""
    (tmp_path / "main.py").write_text(INJECTION)
    report = scanner.scan(tmp_path)
    [finding] = report.findings
    assert finding.rule_id == "DJ-PY-001" and finding.taint_path
    assert report.advisories_loaded == scanner.advisories_loaded > 1000


def test_gate_reads_packages_named_like_tool_directories(
    scanner: IsolatedScanner, tmp_path: Path
) -> None:
    """A bundle's package named venv/ is code its function imports: the gate reads it
    (a plain `donjon scan` of a checkout leaves such directories out)."""
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "tools.py").write_text("import os\ndef run(c):\n    os.system(c)\n")
    (tmp_path / "main.py").write_text(
        "from venv.tools import run\ndef handler(event, context):\n    run(event['c'])\n"
    )
    [finding] = scanner.scan(tmp_path).findings
    assert (finding.rule_id, finding.location.path, finding.confidence.label) == (
        "DJ-PY-001",
        "venv/tools.py",
        "high",
    )
    assert scan_path(tmp_path).findings == ()


def test_scan_errors_are_passed_on(scanner: IsolatedScanner, tmp_path: Path) -> None:
    """What the scan refuses (a missing target) is a ScanError with its own message."""
    with pytest.raises(ScanError, match="does not exist"):
        scanner.scan(tmp_path / "missing")


@pytest.mark.slow  # a helper of its own that fills its memory limit
def test_memory_limit_fails_closed(tmp_path: Path) -> None:
    """A scan that needs more memory than allowed is refused, and the next scan works."""
    s = IsolatedScanner(limits=ScanLimits(memory_mb=16), environ=MEASURED)
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


@pytest.mark.slow  # a helper of its own that burns its CPU limit
def test_cpu_limit_fails_closed(tmp_path: Path) -> None:
    """A scan past its CPU time is killed and the deploy refused with a clear message."""
    s = IsolatedScanner(limits=ScanLimits(cpu_s=1, timeout_s=120), environ=MEASURED)
    s.start()
    try:
        with pytest.raises(ScanLimitExceeded, match="CPU time"):
            s.scan(_heavy(tmp_path / "heavy"))
    finally:
        s.close()


@pytest.mark.slow  # a second helper loads the advisory snapshot again
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


def test_spawn_does_not_wait_for_the_helper_and_start_does(
    shared_advisories: Path, advisory_cache: Path, tmp_path: Path
) -> None:
    """`spawn` starts the helper and returns before its ready report is read (nothing is
    loaded yet as far as the caller knows); `start` then waits for it, and it scans."""
    s = IsolatedScanner(shared_advisories, cache_dir=advisory_cache, environ=MEASURED)
    try:
        s.spawn()
        assert s.pid is not None
        assert s.advisories_loaded == 0
        s.start()
        assert s.advisories_loaded > 0
        bundle = tmp_path / "fn"
        bundle.mkdir()
        (bundle / "main.py").write_text(INJECTION)
        assert any(f.rule_id == "DJ-PY-001" for f in s.scan(bundle).findings)
    finally:
        s.close()


def test_a_spawned_helper_that_cannot_load_its_advisories_fails_start(tmp_path: Path) -> None:
    """A helper spawned over advisories that do not load makes `start` raise ScanError and
    leaves no helper running."""
    s = IsolatedScanner(tmp_path / "no-such-advisories", environ=MEASURED)
    s.spawn()
    with pytest.raises(ScanError):
        s.start()
    assert s.pid is None


def test_a_spawned_helper_closed_with_kill_is_killed_not_waited_for(
    shared_advisories: Path, advisory_cache: Path
) -> None:
    """`close(kill=True)` ends a helper that may still be loading with SIGKILL, where a
    plain close lets it read the end of its input and exit by itself."""
    s = IsolatedScanner(shared_advisories, cache_dir=advisory_cache, environ=MEASURED)
    s.spawn()
    proc = s._proc
    assert proc is not None
    s.close(kill=True)
    assert proc.returncode == -signal.SIGKILL
    assert s.pid is None


def test_a_spawned_helper_that_died_is_read_not_spawned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawned helper that exited before `start` (its advisories did not load) is not
    replaced by a second one that would fail the same way: `start` reads the first one's
    report, so the node pays one helper start for its ScanError."""
    s = IsolatedScanner(tmp_path / "no-such-advisories", environ=MEASURED)
    spawned: list[int] = []
    spawn = s._spawn

    def counted() -> object:
        proc = spawn()
        spawned.append(proc.pid)
        return proc

    monkeypatch.setattr(s, "_spawn", counted)
    s.spawn()
    proc = s._proc
    assert proc is not None
    proc.wait(60)  # it reported why and exited before anyone asked
    with pytest.raises(ScanError, match="advisor"):
        s.start()
    assert len(spawned) == 1
    assert s.pid is None


def test_a_helper_that_does_not_start_in_time_is_killed(
    shared_advisories: Path, advisory_cache: Path
) -> None:
    """A start that times out kills the helper it waited for, so the next scan (or the
    advisory watch's restart) starts a new one rather than waiting on the old one again."""
    s = IsolatedScanner(
        shared_advisories,
        ScanLimits(start_timeout_s=0.001),
        cache_dir=advisory_cache,
        environ=MEASURED,
    )
    try:
        s.spawn()
        proc = s._proc
        assert proc is not None
        with pytest.raises(ScanError, match="did not answer"):
            s.start()
        assert s.pid is None
        assert proc.returncode is not None
    finally:
        s.close(kill=True)
