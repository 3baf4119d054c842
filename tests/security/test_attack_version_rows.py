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
from donjon.bundle import build_bundle
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
    given its MAC at that start (version rows and functions rows); after that, a row whose
    MAC was removed is not served."""
    node = own
    node.deploy(bundle(tmp_path, "older", "def handler(e, c):\n    return 'older'\n"))
    node.stop()
    _edit(node, "UPDATE function_versions SET mac = NULL")
    _edit(node, "UPDATE functions SET mac = NULL")
    (node.data_dir / "versions-sealed").unlink()
    (node.data_dir / "functions-sealed").unlink()
    node.serve_again()
    assert node.invoke("older", {}).json() == "older"
    assert (node.data_dir / "versions-sealed").exists()
    assert (node.data_dir / "functions-sealed").exists()
    node.stop()
    _edit(node, "UPDATE function_versions SET mac = NULL")
    node.serve_again()
    assert not _served(node, "older")
    assert _skipped(node, "older@1")


def _deploy_as(node: LiveNode, key: str, directory: Path) -> int:
    with node.client(key) as c:
        r = c.post(
            "/v1/functions",
            content=build_bundle(directory)[1],
            headers={"content-type": "application/gzip"},
        )
    return r.status_code


def _owner(node: LiveNode, name: str) -> str:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        (owner,) = conn.execute("SELECT owner FROM functions WHERE name = ?", (name,)).fetchone()
    return str(owner)


def test_the_current_version_pointer_rolled_back_is_not_served(
    own: LiveNode, tmp_path: Path
) -> None:
    """The functions row pointed back at an older version (its row and MAC intact: a
    trigger made public or a grant the newer version dropped comes back): not served."""
    node = own
    node.deploy(bundle(tmp_path / "1", "rolled", "def handler(e, c):\n    return 'old'\n"))
    node.deploy(bundle(tmp_path / "2", "rolled", "def handler(e, c):\n    return 'new'\n"))
    node.stop()
    _edit(node, "UPDATE functions SET version = 1 WHERE name = 'rolled'")
    node.serve_again()
    assert node.invoke("rolled", {}).status_code == 404
    assert _skipped(node, "rolled@1")


def test_a_removed_function_put_back_in_the_database_is_not_served(
    own: LiveNode, tmp_path: Path
) -> None:
    """A removed function's row written again (its old version's row and MAC intact)."""
    node = own
    node.deploy(bundle(tmp_path, "gone", "def handler(e, c):\n    return 'back'\n"))
    owner = _owner(node, "gone")
    with node.client() as c:
        assert c.delete("/v1/functions/gone").status_code == 204
    node.stop()
    _edit(node, "INSERT INTO functions (name, version, owner) VALUES ('gone', 1, ?)", owner)
    node.serve_again()
    assert node.invoke("gone", {}).status_code == 404


def test_an_owner_changed_in_the_database_gives_no_one_the_function(
    own: LiveNode, tmp_path: Path
) -> None:
    """Another developer written in as a function's owner is not its owner after the
    restart; and a function skipped at load (here for that change) is not free for any
    developer to deploy over: its owner or an admin redeploys it."""
    node = own
    alice = node.create_key("alice", "developer")["key"]
    made = node.create_key("mallory", "developer")
    mallory = made["key"]
    mine = bundle(tmp_path / "a", "owned", "def handler(e, c):\n    return 'alice'\n")
    assert _deploy_as(node, alice, mine) == 201
    theirs = bundle(tmp_path / "m", "owned", "def handler(e, c):\n    return 'mallory'\n")
    assert _deploy_as(node, mallory, theirs) == 403
    node.stop()
    _edit(node, "UPDATE functions SET owner = ? WHERE name = 'owned'", f"key:{made['id']}")
    node.serve_again()
    assert _deploy_as(node, mallory, theirs) == 403
    assert node.invoke("owned", {}).json() != "mallory"
    node.deploy(mine)  # the admin puts it back
    assert node.invoke("owned", {}).json() == "alice"


def test_a_function_skipped_at_start_is_still_its_owners(own: LiveNode, tmp_path: Path) -> None:
    """A function whose version row no longer loads (one byte changed) is not a free
    name: another developer's deploy of it is refused; its owner's puts it back."""
    node = own
    alice = node.create_key("alice", "developer")["key"]
    mallory = node.create_key("mallory", "developer")["key"]
    mine = bundle(tmp_path / "a", "kept", "def handler(e, c):\n    return 'alice'\n")
    assert _deploy_as(node, alice, mine) == 201
    node.stop()
    _edit(node, "UPDATE function_versions SET created_by = 'key:x' WHERE name = 'kept'")
    node.serve_again()
    assert _skipped(node, "kept@1")
    theirs = bundle(tmp_path / "m", "kept", "def handler(e, c):\n    return 'mallory'\n")
    assert _deploy_as(node, mallory, theirs) == 403
    assert _deploy_as(node, alice, mine) == 201
    assert node.invoke("kept", {}).json() == "alice"
