"""`donjon init`: what it creates, with which permissions, and that it never overwrites."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from harness import donjon_env, free_port, run_cli


def test_init_creates_private_state(data_dir: Path) -> None:
    """The data dir is 0700, the master and TLS keys 0600, the database exists."""
    out = json.loads(run_cli(donjon_env(data_dir), "init", "--json").stdout)
    assert out["admin_key"].startswith("dj_")
    assert out["url"].startswith("https://")
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "tls" / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    assert (data_dir / "donjon.db").exists()


def test_admin_key_is_stored_only_hashed(data_dir: Path) -> None:
    """The printed key appears nowhere in the data dir."""
    key = json.loads(run_cli(donjon_env(data_dir), "init", "--json").stdout)["admin_key"]
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
            assert key.split("_", 2)[2].encode() not in path.read_bytes(), path
    with sqlite3.connect(data_dir / "donjon.db") as conn:
        (digest,) = conn.execute("SELECT digest FROM api_keys").fetchone()
    assert len(digest) == 32


def test_init_twice_changes_nothing(data_dir: Path) -> None:
    """A second init overwrites no key, certificate or database."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    before = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    second = run_cli(env, "init")
    assert "already initialised" in second.stdout
    assert json.loads(run_cli(env, "init", "--json").stdout)["admin_key"] is None
    after = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and p in before}
    assert before.keys() == after.keys()
    for p, content in before.items():
        if p.name not in ("donjon.db", "donjon.db-wal", "donjon.db-shm"):
            assert content == after[p], p


def test_audit_verify_on_fresh_dir(data_dir: Path) -> None:
    """A freshly initialised log verifies."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    done = run_cli(env, "audit", "verify")
    assert "intact" in done.stdout


def test_audit_verify_names_the_bad_record(data_dir: Path) -> None:
    """After an edit, `donjon audit verify` exits non-zero naming the first bad record."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    with sqlite3.connect(data_dir / "donjon.db") as conn:
        conn.execute(
            "UPDATE audit_log SET record = replace(record, 'admin', 'mallory') WHERE seq = 1"
        )
    done = run_cli(env, "audit", "verify", check=False)
    assert done.returncode != 0
    assert "first bad record 1" in done.stderr


def test_commands_without_init_explain(data_dir: Path) -> None:
    """Using an uninitialised data dir gives one clear line and no traceback."""
    done = run_cli(donjon_env(data_dir), "audit", "verify", check=False)
    assert done.returncode == 1
    assert "donjon init" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_without_init_never_says_it_serves(data_dir: Path) -> None:
    """`serve` on a data dir not initialised says why and exits 1, without saying first
    that it serves (helper-123's review: "donjon serving on ..." came before the error)."""
    done = run_cli(donjon_env(data_dir), "serve", "--port", str(free_port()), check=False)
    assert done.returncode == 1
    assert "donjon init" in done.stderr or "not initialised" in done.stderr, done.stderr
    assert "serving on" not in done.stderr + done.stdout


def test_serve_refuses_without_bubblewrap(data_dir: Path, tmp_path: Path) -> None:
    """With no bwrap on PATH, serve refuses to start: functions never run unsandboxed."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    env["PATH"] = str(tmp_path / "empty")
    done = run_cli(env, "serve", "--port", "1", check=False)
    assert done.returncode == 1
    assert "bubblewrap" in done.stderr
