"""`donjon serve` appends its audit log through a writer process of its own."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from harness import LiveNode, run_cli, start_node

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose


def _writers(parent: int) -> list[int]:
    """The audit writer processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat[0] != "Z" and int(stat[1]) == parent and b"donjon.audit.writer" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except FileNotFoundError:
        return False


def _key_created(node: LiveNode, name: str) -> int:
    with node.client() as c:
        return c.post("/v1/keys", json={"name": name, "role": "invoker"}).status_code


def _stored(node: LiveNode, action: str) -> list[dict[str, object]]:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        rows = [json.loads(r) for (r,) in conn.execute("SELECT record FROM audit_log")]
    return [r for r in rows if r["action"] == action]


def test_a_killed_audit_writer_fails_requests_closed_then_is_replaced(tmp_path: Path) -> None:
    """SIGKILL of the node's audit writer: audited requests fail (never served unaudited)
    until a new writer, started by the node, has read the tree again; the log verifies."""
    node = start_node(tmp_path / "data")
    try:
        (writer,) = _writers(node.proc.pid)
        assert _key_created(node, "before") == 201
        os.kill(writer, signal.SIGKILL)
        statuses: list[int] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = _key_created(node, f"after-{len(statuses)}")
            statuses.append(status)
            if status == 201:
                break
            time.sleep(0.1)
        assert statuses[-1] == 201, statuses
        assert set(statuses[:-1]) <= {500, 503}, statuses
        (replacement,) = _writers(node.proc.pid)
        assert replacement != writer
    finally:
        node.stop()
    names = {r["detail"]["name"] for r in _stored(node, "key.create")}  # type: ignore[index]  # stored JSON, untyped
    assert {"before", f"after-{len(statuses) - 1}"} <= names
    run_cli(node.env(), "audit", "verify")


def test_a_killed_node_takes_its_writer_and_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    """SIGKILL of `donjon serve`: its writer ends too, and every audited request that
    got its answer is in the log, which verifies."""
    node = start_node(tmp_path / "data")
    try:
        (writer,) = _writers(node.proc.pid)
        for i in range(10):
            assert _key_created(node, f"k{i}") == 201
        node.proc.kill()
        node.proc.wait()
        deadline = time.monotonic() + 60
        while _alive(writer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(writer)
    finally:
        node.stop()
    assert len(_stored(node, "key.create")) >= 10
    run_cli(node.env(), "audit", "verify")
