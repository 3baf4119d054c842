"""A developer key filling the node's disk by redeploying: every deploy of new code kept
its bundle tree (up to 256 MiB) for ever, though only the current version runs. A
function now keeps the trees of its newest DONJON_KEEP_BUNDLES versions; older ones,
and a removed function's, are removed after the next deploy or removal (and at start and
hourly), audited, while the versions' rows, SBOMs and provenance stay. A tree is never
removed under a sandbox still running it, a deploy on its way, or another function that
runs the same code (docs/limits.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from async_support import bundle
from crash_support import query, records
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow

KEEP = 2
CODE = "def handler(event, context):\n    return {{'v': {n}}}\n"


@pytest.fixture(scope="module")
def keeping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(tmp_path_factory.mktemp("bundles"), {"DONJON_KEEP_BUNDLES": str(KEEP)})
    try:
        yield live
    finally:
        live.stop()


def _trees(node: LiveNode) -> set[str]:
    return {p.name for p in (node.data_dir / "bundles").iterdir() if not p.name.startswith(".")}


def _deploy(node: LiveNode, root: Path, name: str, code: str) -> str:
    """Deploy `code` as `name`; the digest of the tree it runs."""
    node.deploy(bundle(root, name, code))
    return _current(node, name)


def _current(node: LiveNode, name: str) -> str:
    """The digest of the tree `name`'s current version runs (present on the node)."""
    (digest,) = query(
        node,
        "SELECT v.digest FROM functions f JOIN function_versions v"
        " ON v.name = f.name AND v.version = f.version WHERE f.name = ?",
        name,
    )[0]
    assert (node.data_dir / "bundles" / digest).is_dir()
    return str(digest)


def _until(test: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not test():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_redeploys_keep_the_newest_versions_trees(keeping: LiveNode, tmp_path: Path) -> None:
    """Seven deploys of new code leave the two newest versions' trees: the rest are
    removed, the removal audited, every version's row kept, and the function still
    answers."""
    node = keeping
    digests = [_deploy(node, tmp_path / f"v{n}", "grow", CODE.format(n=n)) for n in range(7)]
    _until(lambda: not set(digests[:-KEEP]) & _trees(node), "old versions' trees are kept")
    assert set(digests[-KEEP:]) <= _trees(node)
    assert node.invoke("grow", {}).json() == {"v": 6}
    assert query(node, "SELECT count(*) FROM function_versions WHERE name = 'grow'")[0][0] == 7
    pruned = {d for r in records(node, "bundle.prune") for d in r["detail"]["digests"]}
    assert set(digests[:-KEEP]) <= pruned
    assert records(node, "bundle.prune")[-1]["actor"] == "system"


def test_redeploys_in_a_row_keep_only_the_newest_versions_trees(
    keeping: LiveNode, tmp_path: Path
) -> None:
    """A developer redeploying new code as fast as the node takes it: no tree is an hour
    old, and the trees past the newest versions' go after each deploy all the same (they
    were all kept for an hour, so a key filled the disk at its deploys' pace meanwhile)."""
    node = keeping
    digests = [_deploy(node, tmp_path / f"q{n}", "rapid", CODE.format(n=n)) for n in range(5)]
    _until(lambda: not set(digests[:-KEEP]) & _trees(node), "young old versions' trees kept")
    assert set(digests[-KEEP:]) <= _trees(node)
    assert node.invoke("rapid", {}).json() == {"v": 4}


def test_removal_drops_its_trees_and_a_revert_keeps_its_old_one(
    keeping: LiveNode, tmp_path: Path
) -> None:
    """A removed function keeps no tree; trees are shared by content, so a function
    reverted to code an old version ran keeps that tree (its current version runs it)
    while the version between is removed."""
    node = keeping
    code = [f"def handler(event, context):\n    return {n}\n" for n in range(3)]
    first = _deploy(node, tmp_path / "r0", "revert", code[0])
    between = _deploy(node, tmp_path / "r1", "revert", code[1])
    third = _deploy(node, tmp_path / "r2", "revert", code[2])
    alone = _deploy(node, tmp_path / "c", "loner", code[2] + "# alone\n")
    assert _deploy(node, tmp_path / "r3", "revert", code[0]) == first
    _until(lambda: between not in _trees(node), "a version's tree past the newest two is kept")
    assert {first, third} <= _trees(node)
    assert node.invoke("revert", {}).json() == 0
    with node.client() as c:
        assert c.delete("/v1/functions/loner").status_code in (200, 204)
    _until(lambda: alone not in _trees(node), "a removed function's tree is kept")


SLOW = """import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    import late  # read from the version's tree after the sleep
    return late.VALUE
"""


def test_a_draining_versions_tree_stays_until_its_call_ends(
    keeping: LiveNode, tmp_path: Path
) -> None:
    """A call still running on a replaced version keeps its tree: three deploys later the
    tree is there while the call runs, the call imports from it and answers, and the next
    prune after it ended removes it."""
    node = keeping
    root = tmp_path / "slow0"
    directory = bundle(root, "slow", SLOW, "timeout_s: 60\n")
    (directory / "late.py").write_text("VALUE = 'first'\n")
    node.deploy(directory)
    first = _current(node, "slow")
    answers: list[httpx.Response] = []
    call = threading.Thread(target=lambda: answers.append(node.invoke("slow", {"sleep": 8})))
    call.start()
    try:
        _until(lambda: _busy(node, "slow"), "the slow call did not start")
        for n in range(1, 4):
            later = bundle(tmp_path / f"slow{n}", "slow", SLOW, "timeout_s: 60\n")
            (later / "late.py").write_text(f"VALUE = {n}\n")
            node.deploy(later)
        assert first in _trees(node), "the tree of a version still running was removed"
    finally:
        call.join(60)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert answers[0].json() == "first"
    node.deploy(bundle(tmp_path / "slow9", "slow", SLOW.replace("late", "later")))
    _until(lambda: first not in _trees(node), "a drained version's tree is kept")


def _busy(node: LiveNode, name: str) -> bool:
    """Whether a sandbox of `name` serves a call (the node's `donjon_sandboxes` gauge)."""
    with node.client() as c:
        text = c.get("/metrics").text
    prefix = f'donjon_sandboxes{{function="{name}",state="busy"}} '
    return any(
        line.startswith(prefix) and float(line.split()[-1]) > 0 for line in text.splitlines()
    )
