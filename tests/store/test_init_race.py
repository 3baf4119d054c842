"""`donjon init` one at a time on a SQLite file, as on a database server
(tests/store/test_node_lock_postgres.py): two inits at once both found the file empty,
and both wrote an admin key to it, each told it was the first."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness import donjon_env

#: Two `donjon init` processes a test: slow by nature.
pytestmark = pytest.mark.slow


def _inits(envs: list[dict[str, str]]) -> list[tuple[int, str, str]]:
    """The inits started together, then waited for: (exit code, stdout, stderr) each."""
    argv = [sys.executable, "-m", "donjon.cli", "init"]
    started = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for env in envs
    ]
    outputs = [p.communicate(timeout=120) for p in started]
    return [(p.returncode, *out) for p, out in zip(started, outputs, strict=True)]


def _admin_keys(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM api_keys").fetchone()[0])


def test_two_inits_of_two_data_dirs_on_one_sqlite_file(tmp_path: Path) -> None:
    """One makes its node in the file; the other is refused and makes nothing."""
    database = tmp_path / "shared" / "state.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    envs = [{**donjon_env(tmp_path / n), "DONJON_DATABASE_URL": url} for n in ("one", "two")]
    said = _inits(envs)
    codes = sorted(code for code, _, _ in said)
    assert codes[0] == 0 and codes[1] != 0, said
    assert sum("already holds another data dir's node" in err for _, _, err in said) == 1, said
    assert _admin_keys(database) == 1
    refused = next(n for n, (code, _, _) in zip(("one", "two"), said, strict=True) if code)
    assert not (tmp_path / refused / "master.key").exists()


def test_two_inits_of_one_data_dir(tmp_path: Path) -> None:
    """One makes the node and shows its admin key; the other finds it made."""
    said = _inits([donjon_env(tmp_path / "dir")] * 2)
    assert [code for code, _, _ in said] == [0, 0], said
    assert sum("dj_" in out for _, out, _ in said) == 1, said
    assert _admin_keys(tmp_path / "dir" / "donjon.db") == 1
