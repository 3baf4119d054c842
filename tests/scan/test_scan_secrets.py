"""Hard-coded secrets: detection, masking in every output, and baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.scan import (
    Baseline,
    FindingKind,
    ScanError,
    render_json,
    render_sarif,
    render_text,
    scan_path,
    write_baseline,
)
from donjon.scan.scanners.secrets import secret_fingerprint

# Made up for these tests: the right shapes, random values.
TOKEN = "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d"
PASSWORD = "Tr0ub4dor&3-horse"


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "settings.py").write_text(f'GITHUB_TOKEN = "{TOKEN}"\nDB_PASSWORD = "{PASSWORD}"\n')
    (root / "donjon.yaml").write_text(
        "name: s\nhandler: settings.handler\nmemory_mb: 64\ntimeout_s: 3\n"
    )
    return root


def test_tokens_and_passwords_are_found(tmp_path: Path) -> None:
    """A GitHub token (format rule) and a password (keyword rule), each once."""
    report = scan_path(_project(tmp_path / "p"))
    assert [(f.rule_id, f.location.line) for f in report.findings] == [
        ("DJ-SEC-001", 1),
        ("DJ-SEC-003", 2),
    ]
    assert all(f.kind is FindingKind.SECRET for f in report.findings)
    assert report.findings[0].fingerprint == secret_fingerprint(TOKEN)


def test_no_output_format_contains_the_secret(tmp_path: Path) -> None:
    """Reports end up in deploy logs: values are masked in messages and snippets."""
    report = scan_path(_project(tmp_path / "p"))
    for rendered in (render_text(report), render_json(report), render_sarif(report)):
        assert TOKEN not in rendered
        assert PASSWORD not in rendered
        assert TOKEN[4:12] not in rendered
    assert "ghp_********" in render_text(report)


def test_a_baseline_accepts_reviewed_findings_even_after_lines_move(tmp_path: Path) -> None:
    """Write a baseline, shift the code down: the findings stay accepted."""
    project = _project(tmp_path / "p")
    baseline = tmp_path / "baseline.json"
    assert write_baseline(scan_path(project).findings, baseline) == 2
    settings = project / "settings.py"
    settings.write_text("# moved\n\n" + settings.read_text())
    report = scan_path(project, baseline=baseline)
    assert report.findings == ()
    assert len(report.suppressed) == 2
    assert report.blocking() == ()


def test_a_changed_secret_is_not_accepted_by_the_old_baseline(tmp_path: Path) -> None:
    """The baseline accepts the reviewed value, not whatever sits on that line later."""
    project = _project(tmp_path / "p")
    baseline = tmp_path / "baseline.json"
    write_baseline(scan_path(project).findings, baseline)
    settings = project / "settings.py"
    settings.write_text(settings.read_text().replace("8oOOL8d", "8oOOL9x"))
    report = scan_path(project, baseline=baseline)
    assert [f.rule_id for f in report.findings] == ["DJ-SEC-001"]


def test_detect_secrets_baselines_are_accepted(tmp_path: Path) -> None:
    """A .secrets.baseline from detect-secrets suppresses the same secrets."""
    project = _project(tmp_path / "p")
    ds = {
        "version": "1.5.0",
        "plugins_used": [],
        "filters_used": [],
        "results": {
            "settings.py": [
                {
                    "type": "GitHub Token",
                    "filename": "settings.py",
                    "hashed_secret": secret_fingerprint(TOKEN),
                    "is_verified": False,
                    "line_number": 1,
                }
            ]
        },
    }
    baseline = tmp_path / ".secrets.baseline"
    baseline.write_text(json.dumps(ds))
    report = scan_path(project, baseline=baseline)
    assert [f.rule_id for f in report.findings] == ["DJ-SEC-003"]
    assert [f.rule_id for f in report.suppressed] == ["DJ-SEC-001"]


def test_inline_comments_do_not_suppress(tmp_path: Path) -> None:
    """Only the reviewed baseline suppresses: not nosec, not detect-secrets pragmas."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "x.py").write_text(f'TOKEN = "{TOKEN}"  # pragma: allowlist secret  # nosec\n')
    assert [f.rule_id for f in scan_path(root).findings] == ["DJ-SEC-001"]


@pytest.mark.parametrize(
    "content",
    ["not json", '{"something": "else"}', '{"donjon_baseline": 1, "findings": [{"rule_id": 1}]}'],
)
def test_bad_baselines_are_scan_errors(tmp_path: Path, content: str) -> None:
    """A baseline that cannot be understood stops the scan instead of accepting nothing."""
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(ScanError):
        Baseline.load(path)
    with pytest.raises(ScanError, match="cannot read baseline"):
        Baseline.load(tmp_path / "missing.json")
