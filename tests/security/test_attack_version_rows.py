"""Whoever can write the node's database but does not hold its master key (a PostgreSQL
server's admin, an edited copy) changing what a function runs: its stored manifest (a
secret of another tenant granted, a trigger made public) or the bundle its version
names (another function's tree). Before, the next start served the row as it found it,
past every check the deploy made. Each version row now carries a MAC of what is served
from it (store/version_mac.py); a start serves only rows whose MAC matches, skipping and
auditing the rest, and rows written before MACs are given theirs once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_support import bundle
from crash_support import records
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow

READS = (
    "import os\n\ndef handler(event, context):\n"
    "    return sorted(k for k in os.environ if k.startswith('DONJON_SECRET'))\n"
)


@pytest.fixture
def own(tmp_path: Path) -> Iterator[LiveNode]:
    live = start_node(tmp_path / "data")
    try:
        yield live
    finally:
        live.stop()


def _edit(node: LiveNode, sql: str, *args: object) -> None:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        conn.execute(sql, args)


def _row(node: LiveNode, name: str) -> tuple[str, str]:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        digest, manifest = conn.execute(
            "SELECT v.digest, v.manifest FROM functions f JOIN function_versions v"
            " ON v.name = f.name AND v.version = f.version WHERE f.name = ?",
            (name,),
        ).fetchone()
    return str(digest), str(manifest)


def _served(node: LiveNode, name: str) -> bool:
    with node.client() as c:
        return c.get(f"/v1/functions/{name}").status_code == 200


def _skipped(node: LiveNode, target: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records(node, "function.load")
        if r["target"] == target and r["outcome"] == "skipped"
    ]


def test_a_manifest_edited_in_the_database_is_not_served(own: LiveNode, tmp_path: Path) -> None:
    """A grant of a secret slid into the stored manifest: the function is not served at
    the next start (its record skipped, audited, naming the MAC), while an untouched
    function beside it is."""
    node = own
    with node.client() as c:
        assert c.post("/v1/secrets/other-tenant", json={"value": "s3cret"}).status_code == 201
    node.deploy(bundle(tmp_path, "plain", READS))
    node.deploy(bundle(tmp_path, "beside", READS))
    _, manifest = _row(node, "plain")
    granted = json.loads(manifest)
    granted["permissions"] = {**granted.get("permissions", {}), "secrets": ["other-tenant"]}
    node.stop()
    _edit(
        node,
        "UPDATE function_versions SET manifest = ? WHERE name = 'plain'",
        json.dumps(granted, sort_keys=True),
    )
    node.serve_again()
    assert not _served(node, "plain")
    assert node.invoke("plain", {}).status_code == 404
    assert node.invoke("beside", {}).json() == []
    (skipped,) = _skipped(node, "plain@1")
    assert skipped["detail"]["error"] == "VersionUnauthenticated"
    assert "MAC" in skipped["detail"]["reason"]


def test_a_version_pointed_at_another_tree_is_not_served(own: LiveNode, tmp_path: Path) -> None:
    """The digest of one function's version swapped for another function's tree: not
    served; and a MAC copied from another row does not vouch for it either."""
    node = own
    node.deploy(bundle(tmp_path, "victim", "def handler(e, c):\n    return 'victim'\n"))
    node.deploy(bundle(tmp_path, "donor", "def handler(e, c):\n    return 'donor'\n"))
    donor, _ = _row(node, "donor")
    node.stop()
    _edit(node, "UPDATE function_versions SET digest = ? WHERE name = 'victim'", donor)
    _edit(
        node,
        "UPDATE function_versions SET mac = (SELECT mac FROM function_versions"
        " WHERE name = 'donor') WHERE name = 'victim'",
    )
    node.serve_again()
    assert not _served(node, "victim")
    assert node.invoke("donor", {}).json() == "donor"
    assert _skipped(node, "victim@1")


def test_rows_from_before_macs_are_sealed_once_then_a_lost_mac_is_refused(
    own: LiveNode, tmp_path: Path
) -> None:
    """A data dir whose rows have no MAC (written by an earlier version) serves them, each
    given its MAC at that start; after that, a row whose MAC was removed is not served."""
    node = own
    node.deploy(bundle(tmp_path, "older", "def handler(e, c):\n    return 'older'\n"))
    node.stop()
    _edit(node, "UPDATE function_versions SET mac = NULL")
    (node.data_dir / "versions-sealed").unlink()
    node.serve_again()
    assert node.invoke("older", {}).json() == "older"
    assert (node.data_dir / "versions-sealed").exists()
    node.stop()
    _edit(node, "UPDATE function_versions SET mac = NULL")
    node.serve_again()
    assert not _served(node, "older")
    assert _skipped(node, "older@1")
