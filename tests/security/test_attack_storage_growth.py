"""A tenant filling the node's database through what it keeps per function: a developer
key whose function fails every async event fills its dead-letter queue, which is kept
until redriven or purged (DONJON_QUEUE_MAX_DEAD bounds it); one whose function prints
on every call fills the invocation log, and one calling asynchronously keeps every
succeeded invocation with its event and result, both kept for DONJON_LOG_RETENTION_DAYS
whatever their number (DONJON_LOG_MAX_PER_FUNCTION, DONJON_QUEUE_KEEP_SUCCEEDED bound
them; docs/limits.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_support import bundle, invoke_async, wait_for
from donjon.bundle import build_bundle
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow

FAILS = "def handler(event, context):\n    raise RuntimeError('always')\n"
ONCE = "retry: {attempts: 1, backoff_s: 1, max_age_s: 600}\n"


#: The bounds the node serves with, low enough to pass in a few calls.
BOUNDS = {
    "DONJON_QUEUE_MAX_DEAD": "3",
    "DONJON_LOG_MAX_PER_FUNCTION": "5",
    "DONJON_QUEUE_KEEP_SUCCEEDED": "3",
    "DONJON_MAX_FUNCTIONS_PER_OWNER": "2",
}


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(tmp_path_factory.mktemp("growth"), BOUNDS)
    try:
        yield live
    finally:
        live.stop()


def _deploy_as(node: LiveNode, key: str, directory: Path) -> None:
    _, archive = build_bundle(directory)
    with node.client(key) as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text


def test_dead_letters_of_one_function_are_bounded(bounded: LiveNode, tmp_path: Path) -> None:
    """Three events dead of a bound of three: the fourth async call is refused 503 with
    Retry-After naming the dead-letter queue, nothing of it is kept, the three dead are
    all still there; once an admin purges them the function's events are taken again."""
    node = bounded
    developer = node.create_key("growth-dev", "developer")["key"]
    _deploy_as(node, developer, bundle(tmp_path, "growth-dead", FAILS, ONCE))
    for n in range(3):
        r = invoke_async(node, "growth-dead", {"n": n}, key=developer)
        assert r.status_code == 202, r.text
        assert wait_for(node, r.json()["invocation_id"], key=developer)["status"] == "dead"
    refused = invoke_async(node, "growth-dead", {"n": 3}, key=developer)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert "dead-letter queue of function growth-dead is full" in refused.json()["detail"]
    with node.client() as c:
        dead = c.get("/v1/dlq", params={"function": "growth-dead"}).json()
        assert len(dead) == 3, dead
        assert c.delete("/v1/dlq", params={"function": "growth-dead"}).status_code == 200
    again = invoke_async(node, "growth-dead", {"n": 4}, key=developer)
    assert again.status_code == 202, again.text


PRINTS = "def handler(event, context):\n    print('p' * 4000)\n    return event\n"


def test_invocation_logs_of_one_function_are_bounded(bounded: LiveNode, tmp_path: Path) -> None:
    """Twelve calls of a function that prints, of a bound of five entries: the five newest
    calls' entries are kept (oldest first trimmed), another function's are its own; rows
    counted in the node's database once it has stopped."""
    node = bounded
    developer = node.create_key("growth-printer", "developer")["key"]
    _deploy_as(node, developer, bundle(tmp_path, "growth-logs", PRINTS))
    _deploy_as(node, developer, bundle(tmp_path, "growth-other", PRINTS))
    ids = []
    for n in range(12):
        r = node.invoke("growth-logs", {"n": n}, key=developer)
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-request-id"])
    assert node.invoke("growth-other", {}, key=developer).status_code == 200
    node.stop()
    with sqlite3.connect(node.data_dir / "donjon.db") as db:
        kept = [
            row[0]
            for row in db.execute(
                "SELECT request_id FROM invocation_logs WHERE function = ? ORDER BY id",
                ("growth-logs",),
            )
        ]
        others = db.execute(
            "SELECT count(*) FROM invocation_logs WHERE function = 'growth-other'"
        ).fetchone()[0]
    node.serve_again(BOUNDS)
    assert kept == ids[-5:]
    assert others == 1


def test_succeeded_invocations_of_one_function_are_bounded(
    bounded: LiveNode, tmp_path: Path
) -> None:
    """Eight async calls that succeed, of a bound of three: the three newest are kept
    (their results still read), the oldest forgotten (404), none pending or dead lost."""
    node = bounded
    developer = node.create_key("growth-async", "developer")["key"]
    _deploy_as(node, developer, bundle(tmp_path, "growth-done", PRINTS))
    ids = []
    for n in range(8):
        r = invoke_async(node, "growth-done", {"n": n, "pad": "x" * 10_000}, key=developer)
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
        assert wait_for(node, ids[-1], key=developer)["status"] == "succeeded"
    node.stop()
    with sqlite3.connect(node.data_dir / "donjon.db") as db:
        kept = {
            row[0]
            for row in db.execute("SELECT id FROM invocations WHERE function = 'growth-done'")
        }
    node.serve_again(BOUNDS)
    assert kept == set(ids[-3:])
    assert wait_for(node, ids[-1], key=developer)["result"]["n"] == 7
    with node.client(developer) as c:
        assert c.get(f"/v1/invocations/{ids[0]}").status_code == 404


def _bundle_trees(node: LiveNode) -> set[str]:
    return {p.name for p in (node.data_dir / "bundles").iterdir() if not p.name.startswith(".")}


def test_refused_deploys_keep_no_bundle(bounded: LiveNode, tmp_path: Path) -> None:
    """Deploys refused after their bundle was unpacked (a name another key owns: 403; a
    handler that fails at import: 422) leave no bundle tree on the node; before, each
    kept its tree (up to 256 MiB) for ever, so a refused key could fill the disk."""
    node = bounded
    owner = node.create_key("growth-owner", "developer")["key"]
    other = node.create_key("growth-other-dev", "developer")["key"]
    ok = "def handler(event, context):\n    return 1\n"
    _deploy_as(node, owner, bundle(tmp_path / "owned", "growth-owned", ok))
    before = _bundle_trees(node)
    for n, (name, code, status) in enumerate(
        [
            ("growth-owned", ok, 403),
            ("growth-owned", ok, 403),
            ("growth-broken", "raise RuntimeError('at import')\n", 422),
        ]
    ):
        directory = bundle(tmp_path / f"refused{n}", name, code)
        (directory / "blob.bin").write_bytes(n.to_bytes(1, "big") * 100_000)
        _, archive = build_bundle(directory)
        with node.client(other) as c:
            r = c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )
        assert r.status_code == status, r.text
    assert _bundle_trees(node) == before
    assert node.invoke("growth-owned", {}, key=owner).status_code == 200


def test_functions_one_key_owns_are_bounded(bounded: LiveNode, tmp_path: Path) -> None:
    """Each function's storage is bounded, so how many one key owns bounds the whole: of
    a bound of two, a third new function is refused (403, nothing deployed, no bundle kept),
    a new version of an owned one is not, and removing one makes room."""
    node = bounded
    developer = node.create_key("growth-many", "developer")["key"]
    code = "def handler(event, context):\n    return 2\n"
    for name in ("growth-one", "growth-two"):
        _deploy_as(node, developer, bundle(tmp_path / name, name, code))
    trees = _bundle_trees(node)
    _, archive = build_bundle(bundle(tmp_path / "three", "growth-three", code + "# 3\n"))
    with node.client(developer) as c:
        refused = c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )
        assert refused.status_code == 403, refused.text
        assert "already owns 2 functions" in refused.json()["detail"]
        with node.client() as admin:
            assert admin.get("/v1/functions/growth-three").status_code == 404
        assert _bundle_trees(node) == trees
        _deploy_as(node, developer, bundle(tmp_path / "two-v2", "growth-two", code + "# v2\n"))
        assert c.delete("/v1/functions/growth-one").status_code in (200, 204)
    _deploy_as(node, developer, bundle(tmp_path / "three-again", "growth-three", code))
