"""DJ-MF-002 judges egress grants as the node's egress proxy would, networks included."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from click.testing import CliRunner

from donjon.cli.scan_cmd import scan_command
from donjon.scan import scan_path
from donjon.scan.scanners import ManifestScanner

MANIFEST = """name: internal
handler: main.handler
memory_mb: 128
timeout_s: 5
permissions:
  egress: ["10.20.0.5:5432", "api.example.com:443"]
"""


def _bundle(tmp_path: Path) -> Path:
    root = tmp_path / "internal"
    root.mkdir()
    (root / "donjon.yaml").write_text(MANIFEST)
    (root / "main.py").write_text("def handler(event, context):\n    return 1\n")
    return root


def _mf002(root: Path, *networks: str) -> list[str]:
    scanner = ManifestScanner([ipaddress.ip_network(n) for n in networks])
    report = scan_path(root, scanners=[scanner])
    return [f.message for f in report.findings if f.rule_id == "DJ-MF-002"]


def test_a_private_grant_is_a_finding_with_no_network_open(tmp_path: Path) -> None:
    """With no allowed network, 10.20.0.5 is reported with the proxy's reason."""
    assert _mf002(_bundle(tmp_path)) == [
        "permissions.egress grants '10.20.0.5:5432': not globally routable: private 10/8"
    ]


def test_an_allowed_network_clears_the_finding(tmp_path: Path) -> None:
    """The node's DONJON_EGRESS_ALLOW_NETWORKS makes the same grant no finding."""
    root = _bundle(tmp_path)
    assert _mf002(root, "10.20.0.0/16") == []
    assert len(_mf002(root, "10.30.0.0/16")) == 1


def test_donjon_scan_reads_the_allowed_networks(tmp_path: Path) -> None:
    """`donjon scan` judges grants against this host's DONJON_EGRESS_ALLOW_NETWORKS."""
    root = str(_bundle(tmp_path))
    data = str(tmp_path / "data")
    closed = CliRunner(env={"DONJON_DATA_DIR": data}).invoke(scan_command, [root])
    assert closed.exit_code == 1 and "DJ-MF-002" in closed.stdout, closed.output
    opened = CliRunner(
        env={"DONJON_DATA_DIR": data, "DONJON_EGRESS_ALLOW_NETWORKS": "10.20.0.0/16"}
    ).invoke(scan_command, [root])
    assert opened.exit_code == 0 and "DJ-MF-002" not in opened.stdout, opened.output
