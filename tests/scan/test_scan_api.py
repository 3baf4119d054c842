"""The contract the deploy gate relies on: scan_path, ScanPolicy, ScanReport.blocking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from donjon.scan import (
    AdvisoryDB,
    Confidence,
    Finding,
    FindingKind,
    ScanError,
    ScanPolicy,
    ScanReport,
    Severity,
    scan_path,
)

HANDLER = """
import os
import subprocess


def handler(event, context):
    os.system("echo " + event["name"])
    subprocess.run("uptime", shell=True)
    return {"statusCode": 200}
"""
MANIFEST = """name: demo
handler: main.handler
memory_mb: 128
timeout_s: 5
triggers:
  - http: {path: /demo, methods: [POST], auth: key}
"""


def _bundle(root: Path, code: str = HANDLER, manifest: str = MANIFEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(manifest)
    (root / "main.py").write_text(code)
    return root


def test_scan_path_finds_event_data_reaching_a_shell(tmp_path: Path) -> None:
    """A handler passing event data to os.system is a high, high-confidence finding."""
    report = scan_path(_bundle(tmp_path / "b"))
    assert isinstance(report, ScanReport)
    [finding] = report.findings
    assert isinstance(finding, Finding)
    assert (finding.rule_id, finding.severity, finding.confidence) == (
        "DJ-PY-001",
        Severity.HIGH,
        Confidence.HIGH,
    )
    assert finding.kind is FindingKind.CODE
    assert finding.location.path == "main.py"
    assert finding.location.line == 7
    assert finding.cwe.label == "CWE-78"
    assert finding.category.value == "SAS-1"
    assert finding.fix
    assert finding.taint_path[0].location.line == 6  # the handler's event parameter
    assert finding.taint_path[-1].location.line == 7
    assert report.files_scanned == 2


def test_default_policy_blocks_high_severity_with_medium_confidence(tmp_path: Path) -> None:
    """The default gate is high severity and medium-or-higher confidence."""
    report = scan_path(_bundle(tmp_path / "b"))
    assert ScanPolicy() == ScanPolicy(min_severity=Severity.HIGH, min_confidence=Confidence.MEDIUM)
    assert [f.rule_id for f in report.blocking(ScanPolicy())] == ["DJ-PY-001"]
    assert report.blocking() == report.blocking(ScanPolicy())
    strict = ScanPolicy(min_severity=Severity.CRITICAL, min_confidence=Confidence.HIGH)
    assert report.blocking(strict) == ()


def test_low_confidence_findings_do_not_block_by_default(tmp_path: Path) -> None:
    """A sink fed by a value of unknown origin is reported but does not block."""
    code = "import os\n\ndef run(script):\n    os.system(script)\n"
    report = scan_path(_bundle(tmp_path / "b", code))
    [finding] = report.findings
    assert finding.confidence is Confidence.LOW
    assert report.blocking() == ()
    assert report.blocking(ScanPolicy(min_confidence=Confidence.LOW)) == (finding,)


def test_policy_from_strings_parses_and_rejects() -> None:
    """Settings text becomes a policy; bad values are a ScanError naming the choices."""
    assert ScanPolicy.from_strings("critical", "high") == ScanPolicy(
        Severity.CRITICAL, Confidence.HIGH
    )
    assert ScanPolicy.from_strings(" High ", "LOW") == ScanPolicy(Severity.HIGH, Confidence.LOW)
    with pytest.raises(ScanError, match="unknown severity 'severe'") as bad:
        ScanPolicy.from_strings("severe", "medium")
    assert "low, medium, high, critical" in bad.value.hint
    with pytest.raises(ScanError, match="unknown confidence 'sure'"):
        ScanPolicy.from_strings("high", "sure")


def test_constant_commands_are_not_injection(tmp_path: Path) -> None:
    """The same sinks fed only by constants report nothing."""
    code = (
        "import os, subprocess\n"
        "CMD = 'ls -la'\n"
        "def handler(event, context):\n"
        "    os.system(CMD)\n"
        "    subprocess.run(f\"du -sh {'/srv'}\", shell=True)\n"
        "    return {}\n"
    )
    assert scan_path(_bundle(tmp_path / "b", code)).findings == ()


def test_scanning_a_single_file(tmp_path: Path) -> None:
    """A file can be scanned on its own; its path is reported by name."""
    target = tmp_path / "job.py"
    target.write_text(
        "import pickle\n\ndef handler(event, context):\n    return pickle.loads(event['blob'])\n"
    )
    [finding] = scan_path(target).findings
    assert finding.location.path == "job.py"
    assert finding.rule_id == "DJ-PY-004"
    assert finding.severity is Severity.HIGH


def test_missing_target_is_a_scan_error(tmp_path: Path) -> None:
    """Scanning nothing is an error, not an empty (passing) report."""
    with pytest.raises(ScanError, match="does not exist"):
        scan_path(tmp_path / "nope")


def test_vendored_dependencies_are_not_scanned_as_code(
    tmp_path: Path, advisory_db: AdvisoryDB
) -> None:
    """.deps/ code is not the function's code, but its distributions are checked."""
    bundle = _bundle(tmp_path / "b", "def handler(event, context):\n    return {}\n")
    lib = bundle / ".deps" / "lib"
    lib.mkdir(parents=True)
    (lib / "bad.py").write_text(
        "import os\ndef handler(event, context):\n    os.system(event['x'])\n"
    )
    dist = bundle / ".deps" / "requests-2.25.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: requests\nVersion: 2.25.0\n")
    report = scan_path(bundle, advisories=advisory_db)
    assert {f.rule_id for f in report.findings} == {"DJ-DEP-001"}
    assert all(
        f.location.path.startswith(".deps/requests-2.25.0.dist-info") for f in report.findings
    )
    ids = {f.advisory.id for f in report.findings if f.advisory}
    assert "PYSEC-2023-74" in ids


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    """A link out of the bundle is neither read nor quoted (the bundle is untrusted)."""
    outside = tmp_path / "outside.py"
    outside.write_text('PASSWORD = "Tr0ub4dor&3-horse-staple"\n')
    bundle = _bundle(tmp_path / "b", "def handler(event, context):\n    return {}\n")
    os.symlink(outside, bundle / "linked.py")
    os.symlink(tmp_path, bundle / "linked_dir")
    report = scan_path(bundle)
    assert report.findings == ()
    assert any("symbolic link" in n for n in report.notes)


def test_syntax_errors_are_noted_not_fatal(tmp_path: Path) -> None:
    """A file that is not Python 3 is skipped with a note; the rest is scanned."""
    bundle = _bundle(tmp_path / "b")
    (bundle / "old.py").write_text("print 'python 2'\n")
    report = scan_path(bundle)
    assert any("old.py: not valid Python 3" in n for n in report.notes)
    assert [f.rule_id for f in report.findings] == ["DJ-PY-001"]


def test_no_advisory_database_is_a_note(tmp_path: Path) -> None:
    """Without advisories dependencies are listed as unchecked, never silently passed."""
    bundle = _bundle(tmp_path / "b", "def handler(event, context):\n    return {}\n")
    (bundle / "requirements.txt").write_text("jinja2==2.10\n")
    report = scan_path(bundle)
    assert report.findings == ()
    assert any("dependencies were not checked" in n for n in report.notes)


def test_concurrent_scans_share_one_database(tmp_path: Path, advisory_db: AdvisoryDB) -> None:
    """The server scans deploys in threads with one AdvisoryDB: results do not mix."""
    from concurrent.futures import ThreadPoolExecutor

    bundles = []
    for i in range(6):
        bundle = _bundle(tmp_path / f"b{i}", HANDLER if i % 2 else "x = 1\n")
        (bundle / "requirements.txt").write_text("jinja2==2.10\n" if i % 3 == 0 else "")
        bundles.append(bundle)
    with ThreadPoolExecutor(max_workers=3) as pool:
        reports = list(pool.map(lambda b: scan_path(b, advisories=advisory_db), bundles * 2))
    for bundle, report in zip(bundles * 2, reports, strict=True):
        i = int(bundle.name[1:])
        rules = {f.rule_id for f in report.findings}
        assert ("DJ-PY-001" in rules) == bool(i % 2)
        assert ("DJ-DEP-001" in rules) == (i % 3 == 0)


def test_special_files_are_not_read(tmp_path: Path) -> None:
    """A FIFO named like code would block a reader forever: it is skipped with a note."""
    bundle = _bundle(tmp_path / "b")
    os.mkfifo(bundle / "pipe.py")
    report = scan_path(bundle)
    assert any("pipe.py: skipped, not a regular file" in n for n in report.notes)
    assert [f.rule_id for f in report.findings] == ["DJ-PY-001"]
