"""A second `donjon serve` on a data dir a node already serves (store/node_lock.py).

Before the lock, the second one started: it swept the first node's sandbox staging and
cgroups, and its audit writer appended to the same log, so the first node answered every
deploy and call 500 ("the audit writer could not append it") until it was stopped. A
unit started twice, or a restart while the old process lingers, did that. Now the second
one is refused before it binds, sweeps or opens anything, naming the node that holds the
dir, and the first serves on as if nothing happened. A node killed with SIGKILL leaves no
stale lock: the kernel releases it, and the next `donjon serve` starts.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from crash_support import kill_node, verify_intact
from harness import EXAMPLES, LiveNode, free_port, refused_serve, start_node, start_up

pytestmark = pytest.mark.slow  # a node of its own, killed on purpose


def _greets(node: LiveNode, name: str) -> None:
    answer = node.invoke("hello", {"name": name})
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == f"hello, {name}"


def test_a_second_node_on_a_served_data_dir_is_refused_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    node = start_node(tmp_path / "node")
    try:
        node.deploy(EXAMPLES / "hello")
        _greets(node, "before")
        said = refused_serve(node.data_dir)
        assert "is already served by another donjon process" in said, said
        assert f"(pid {node.proc.pid}, serving since " in said, said
        assert "serving on" not in said  # it never came up
        # The first node is untouched: its sandboxes, its writer, its log.
        for i in range(5):
            _greets(node, f"after-{i}")
        changed = shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
        with (changed / "main.py").open("a") as handler:
            handler.write("# version 2\n")
        assert node.deploy(changed)["version"] == 2
        _greets(node, "redeployed")
        with node.client() as c:
            logs = c.get("/v1/functions/hello/logs", params={"limit": 20})
        assert logs.status_code == 200, logs.text
    finally:
        node.stop()
    verify_intact(node)


def test_a_node_killed_with_sigkill_leaves_no_lock_behind(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node", measured=False)
    try:
        node.deploy(EXAMPLES / "hello")
        kill_node(node)
        node.serve_again()
        _greets(node, "again")
        said = refused_serve(node.data_dir)  # and the new node holds the dir in turn
        assert "is already served by another donjon process" in said
    finally:
        node.stop()
    verify_intact(node)


def _keys_and_outbox(data_dir: Path) -> tuple[list[tuple[str, object]], int]:
    with sqlite3.connect(data_dir / "donjon.db") as db:
        keys = db.execute("SELECT id, revoked_at FROM api_keys ORDER BY id").fetchall()
        outbox = db.execute("SELECT count(*) FROM audit_outbox").fetchone()[0]
    return keys, int(outbox)


def test_donjon_up_on_a_served_data_dir_is_refused_before_it_mints_a_key(
    tmp_path: Path,
) -> None:
    """`up` minted its developer key in the served dir's database (and revoked it, both
    through the audit outbox) before its `serve` was refused: now nothing is written."""
    node = start_node(tmp_path / "node", measured=False)
    try:
        before = _keys_and_outbox(node.data_dir)
        (tmp_path / "examples").mkdir()
        up = start_up(node.data_dir, free_port(), tmp_path / "examples")
        said, _ = up.communicate(timeout=60)
        assert up.returncode != 0, said
        assert "is already served by another donjon process" in said, said
        assert _keys_and_outbox(node.data_dir) == before
        with node.client() as c:
            assert c.get("/healthz").status_code == 200  # the first serves on
    finally:
        node.stop()
    verify_intact(node)
