"""`donjon logs` through a live node, with the logs sealed in the database file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from harness import LiveNode


def test_donjon_logs_shows_what_a_function_printed_and_the_db_does_not(node: LiveNode) -> None:
    """The CLI shows the printed line; no database file of the node holds it in clear."""
    marker = "sealed-at-rest-line-5519"
    r = node.invoke("probe", {"op": "print", "text": marker})
    assert r.status_code == 200, r.text
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli", "logs", "probe", "-n", "50"],
        env={**node.env(), "COLUMNS": "500"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout.decode()
    assert r.headers["x-request-id"] in done.stdout.decode()
    db_files = list(node.data_dir.glob("donjon.db*"))
    assert db_files
    for path in db_files:
        assert marker.encode() not in path.read_bytes(), path


def test_one_damaged_sealed_log_does_not_hide_the_others(node: LiveNode, tmp_path: Path) -> None:
    """A row's sealed output edited in the database file (or moved, or sealed under another
    master key): that call's entry says its log does not open; the others are served."""
    fn = tmp_path / "seal-damage"
    fn.mkdir()
    (fn / "donjon.yaml").write_text("name: seal-damage\nhandler: main.handler\n")
    (fn / "main.py").write_text("def handler(event, context):\n    print('said', event['n'])\n")
    node.deploy(fn)
    rids = [node.invoke("seal-damage", {"n": n}).headers["x-request-id"] for n in (1, 2)]
    with sqlite3.connect(node.data_dir / "donjon.db") as db:
        (sealed,) = db.execute(
            "SELECT sealed FROM invocation_logs WHERE request_id = ?", (rids[0],)
        ).fetchone()
        db.execute(
            "UPDATE invocation_logs SET sealed = ? WHERE request_id = ?",
            (sealed[:-1] + bytes([sealed[-1] ^ 1]), rids[0]),
        )
    with node.client() as c:
        r = c.get("/v1/functions/seal-damage/logs")
    assert r.status_code == 200, r.text
    outputs = {e["request_id"]: e["output"] for e in r.json()}
    assert "does not open" in outputs[rids[0]] and "said 2" in outputs[rids[1]]
