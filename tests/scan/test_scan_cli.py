"""`donjon scan`: formats, exit codes by threshold, baselines, the advisory database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from donjon.cli.scan_cmd import scan_command
from donjon.scan.deps import osv_update

VULNERABLE = 'import os\n\ndef handler(event, context):\n    os.system(event["cmd"])\n'
UNTRACED = "import os\n\ndef run(cmd):\n    os.system(cmd)\n"


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"DONJON_DATA_DIR": str(tmp_path / "data")})


def _project(tmp_path: Path, code: str) -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / "app.py").write_text(code)
    return root


def test_exit_1_when_a_finding_reaches_the_threshold(runner: CliRunner, tmp_path: Path) -> None:
    """High severity with high confidence fails the default threshold."""
    result = runner.invoke(scan_command, [str(_project(tmp_path, VULNERABLE))])
    assert result.exit_code == 1, result.output
    assert "DJ-PY-001 command-injection" in result.stdout
    assert "1 finding(s) at or above --fail-on high" in result.stderr


def test_thresholds_decide_the_exit_code(runner: CliRunner, tmp_path: Path) -> None:
    """--fail-on and --min-confidence move the bar; 'none' never fails."""
    project = str(_project(tmp_path, UNTRACED))  # high severity, low confidence
    assert runner.invoke(scan_command, [project]).exit_code == 0
    assert runner.invoke(scan_command, [project, "--min-confidence", "low"]).exit_code == 1
    assert (
        runner.invoke(
            scan_command, [project, "--min-confidence", "low", "--fail-on", "critical"]
        ).exit_code
        == 0
    )
    vulnerable = str(_project(tmp_path, VULNERABLE))
    assert runner.invoke(scan_command, [vulnerable, "--fail-on", "none"]).exit_code == 0


def test_json_and_sarif_to_stdout_or_a_file(runner: CliRunner, tmp_path: Path) -> None:
    """Machine formats are clean JSON on stdout, or written with -o."""
    project = str(_project(tmp_path, VULNERABLE))
    result = runner.invoke(scan_command, [project, "--format", "json"])
    assert json.loads(result.stdout)["findings"][0]["rule_id"] == "DJ-PY-001"
    out = tmp_path / "report.sarif"
    result = runner.invoke(scan_command, [project, "--format", "sarif", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert json.loads(out.read_text())["version"] == "2.1.0"


def test_write_baseline_then_accept_it(runner: CliRunner, tmp_path: Path) -> None:
    """A written baseline makes the same scan pass; a new finding fails again."""
    project = _project(tmp_path, VULNERABLE)
    baseline = tmp_path / "baseline.json"
    first = runner.invoke(scan_command, [str(project), "--write-baseline", str(baseline)])
    assert first.exit_code == 1
    assert "1 finding(s) accepted" in first.stderr
    assert runner.invoke(scan_command, [str(project), "--baseline", str(baseline)]).exit_code == 0
    (project / "more.py").write_text(VULNERABLE)
    assert runner.invoke(scan_command, [str(project), "--baseline", str(baseline)]).exit_code == 1


@pytest.mark.slow  # parses the whole advisory snapshot
def test_advisories_option_checks_dependencies(
    runner: CliRunner, tmp_path: Path, shared_advisories: Path
) -> None:
    """--advisories DIR loads OSV records; a vulnerable pin fails the scan."""
    project = _project(tmp_path, "x = 1\n")
    (project / "requirements.txt").write_text("jinja2==2.10\n")
    result = runner.invoke(scan_command, [str(project), "--advisories", str(shared_advisories)])
    assert result.exit_code == 1
    assert "PYSEC-2019-217" in result.stdout
    without = runner.invoke(scan_command, [str(project)])
    assert without.exit_code == 0
    assert "no advisory database: 1 dependencies were not checked" in without.stdout


def test_errors_exit_2_with_one_clear_line(runner: CliRunner, tmp_path: Path) -> None:
    """A bad path, database or baseline is an error (exit 2), not a pass."""
    project = str(_project(tmp_path, "x = 1\n"))
    for args, message in [
        ([str(tmp_path / "nope")], "does not exist"),
        ([project, "--advisories", str(tmp_path / "nodb")], "advisory database"),
        ([project, "--baseline", str(tmp_path / "nobase.json")], "cannot read baseline"),
        ([], "no PATH to scan"),
    ]:
        result = runner.invoke(scan_command, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr


def test_update_db_failure_is_clear(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--update-db without a reachable OSV host exits 2 and says what to do."""
    monkeypatch.setattr(osv_update, "OSV_PYPI_EXPORT_URL", "http://127.0.0.1:9/all.zip")
    result = runner.invoke(scan_command, ["--update-db"])
    assert result.exit_code == 2
    assert "could not download the OSV advisory export" in result.stderr
    assert "hint: " in result.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_a_file_name_that_is_not_utf8_is_reported_escaped(
    runner: CliRunner, tmp_path: Path, fmt: str
) -> None:
    """A module named b"\\xff.py" (a Latin-1 checkout): its finding is reported under the
    name with the byte escaped, in every format; the scan ended in a UnicodeEncodeError
    traceback (the gate refuses such names at unpack)."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / b"\xff.py".decode("utf-8", "surrogateescape")).write_text(VULNERABLE)
    result = runner.invoke(scan_command, ["--format", fmt, str(root)])
    assert result.exit_code == 1, result.output
    assert "xff.py" in result.stdout  # \xff.py (in SARIF's URI: %5Cxff.py)


def test_a_file_name_with_line_breaks_cannot_forge_report_lines(
    runner: CliRunner, tmp_path: Path
) -> None:
    """A module whose name holds newlines and lines of a clean report: the text report
    names it on one line, escaped, so no line of the report is the name's."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "x\n\n0 finding(s)\nscan clean.py").write_text(VULNERABLE)
    result = runner.invoke(scan_command, ["--format", "text", str(root)])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert "0 finding(s)" not in lines and "scan clean.py" not in lines, result.stdout
    assert "x\\x0a\\x0a0 finding(s)\\x0ascan clean.py" in lines, result.stdout
