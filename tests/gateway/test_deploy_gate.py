"""The deploy gate: the scanner runs on the server for every deploy, by the admin's policy."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from harness import ADVISORIES, LiveNode, run_cli

INJECTION = "import os\ndef handler(event, context):\n    return os.system(event['cmd'])\n"


def _bundle(root: Path, name: str, code: str) -> Path:
    root.mkdir(parents=True)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n")
    (root / "main.py").write_text(code)
    return root


def _audit(node: LiveNode) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 300}).json()
    return records


def test_injection_blocks_the_deploy_and_changes_nothing(node: LiveNode, tmp_path: Path) -> None:
    """Event data reaching os.system is a blocking finding: 422 with the rule, nothing stored."""
    fn = _bundle(tmp_path / "inj", "gate-injection", INJECTION)
    done = run_cli(node.env(), "deploy", str(fn), check=False)
    assert done.returncode == 1
    assert "DJ-PY-" in done.stderr and "os.system" in done.stderr
    assert "block this deploy" in done.stderr
    assert "/bundles/" not in done.stderr  # the server's paths are not shown
    with node.client() as c:
        assert c.get("/v1/functions/gate-injection").status_code == 404
    rejected = [
        r
        for r in _audit(node)
        if r["action"] == "function.deploy"
        and r["outcome"] == "rejected"
        and r["detail"].get("error") == "DeployBlocked"
    ]
    assert rejected


def test_only_admins_may_skip_the_scan(node: LiveNode, tmp_path: Path) -> None:
    """--unsafe-skip-scan is refused to developers (audited) and allowed, audited, to admins."""
    fn = _bundle(tmp_path / "skip", "gate-skipped", INJECTION)
    developer = node.create_key("gate-dev", "developer")["key"]
    refused = run_cli(node.env(developer), "deploy", str(fn), "--unsafe-skip-scan", check=False)
    assert refused.returncode == 1 and "403" in refused.stderr
    done = run_cli(node.env(), "deploy", str(fn), "--unsafe-skip-scan", "--json")
    assert json.loads(done.stdout)["scan"] == {"skipped": True}
    assert "UNSAFE" in done.stderr
    records = _audit(node)
    assert any(
        r["action"] == "authz.denied" and "unsafe_skip_scan" in str(r["detail"]) for r in records
    )
    assert any(
        r["action"] == "function.deploy"
        and r["target"] == "gate-skipped@1"
        and r["detail"].get("unsafe_skip_scan") is True
        for r in records
    )


def test_findings_below_the_bar_are_shown_not_blocking(node: LiveNode, tmp_path: Path) -> None:
    """A deploy with only low-confidence findings succeeds and prints what was found."""
    code = (
        "import subprocess\ndef handler(event, context):\n"
        "    return subprocess.run(['ls'], capture_output=True).returncode\n"
    )
    fn = _bundle(tmp_path / "low", "gate-shown", code)
    done = run_cli(node.env(), "deploy", str(fn))
    assert "deployed gate-shown" in done.stdout


@pytest.mark.skipif(not ADVISORIES.is_dir(), reason="needs ../shared/data/pypa-advisory-db")
def test_vulnerable_vendored_dependency_blocks(node: LiveNode) -> None:
    """A vendored Jinja2 2.10 matches PyPA advisories and blocks the deploy, naming them."""
    files = {
        "donjon.yaml": b"name: gate-deps\nhandler: main.handler\n",
        "main.py": b"def handler(event, context):\n    return 1\n",
        ".deps/Jinja2-2.10.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n"
        ),
        ".deps/jinja2/__init__.py": b"",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with node.client() as c:
        r = c.post("/v1/functions", content=buf.getvalue())
        assert r.status_code == 422, r.text
        body = r.json()
        assert "jinja2" in body["report"].lower()
        assert "PYSEC-" in body["report"] or "GHSA-" in body["report"]
        assert c.get("/v1/functions/gate-deps").status_code == 404
