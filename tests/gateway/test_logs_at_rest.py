"""`donjon logs` through a live node, with the logs sealed in the database file."""

from __future__ import annotations

import subprocess
import sys

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
