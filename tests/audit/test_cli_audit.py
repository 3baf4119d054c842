"""`donjon init` makes the signing key; `donjon audit pubkey` and `donjon audit verify`."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

from donjon.audit import SigningKey, VerifierKey, open_checkpoint
from harness import donjon_env, run_cli


def test_init_makes_the_signing_key_and_a_checkpoint(data_dir: Path) -> None:
    """init writes a 0600 Ed25519 key, its verifier key, and a signed checkpoint in the
    file; `audit pubkey` prints the same verifier key."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    key_path = data_dir / "audit-signing.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    vkey = VerifierKey.parse((data_dir / "audit-signing.pub").read_text())
    assert SigningKey.load(key_path).verifier == vkey
    printed = run_cli(env, "audit", "pubkey").stdout.strip()
    assert VerifierKey.parse(printed) == vkey
    as_json = json.loads(run_cli(env, "audit", "pubkey", "--output", "json").stdout)
    assert as_json == {"verifier_key": printed}
    lines = (data_dir / "audit-checkpoints.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert open_checkpoint(last["note"], vkey).size == last["size"] == 2
    with sqlite3.connect(data_dir / "donjon.db") as conn:
        actions = [
            a for (a,) in conn.execute("SELECT json_extract(record, '$.action') FROM audit_log")
        ]
    assert actions == ["key.create", "audit.signing_key.create"]


def test_verify_full_then_incremental(data_dir: Path) -> None:
    """verify passes, then --incremental starts after the checkpoint it verified."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    full = json.loads(run_cli(env, "audit", "verify", "--output", "json").stdout)
    assert full["ok"] and full["records"] == 2 and full["since"] == 0
    again = json.loads(run_cli(env, "audit", "verify", "--incremental", "--output", "json").stdout)
    assert again["ok"] and again["since"] == 2


def test_verify_against_another_key_fails(data_dir: Path, tmp_path: Path) -> None:
    """verify --key with a key that did not sign the log exits 1 and says why."""
    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    other = tmp_path / "other.pub"
    other.write_text(str(SigningKey.generate().verifier) + "\n")
    done = run_cli(env, "audit", "verify", "--key", str(other), check=False)
    assert done.returncode == 1
    assert "TAMPERED" in done.stderr and "signed by this log's key" in done.stderr


def test_verify_names_a_range_when_hashes_were_rewritten(data_dir: Path) -> None:
    """A record rewritten with its leaf hash: verify exits 1 naming the range."""
    from donjon.audit import leaf_hash

    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    with sqlite3.connect(data_dir / "donjon.db") as conn:
        (stored,) = conn.execute("SELECT record FROM audit_log WHERE seq = 2").fetchone()
        record = bytes(stored).replace(b'"ok"', b'"no"')
        conn.execute(
            "UPDATE audit_log SET record = ?, hash = ? WHERE seq = 2", (record, leaf_hash(record))
        )
    done = run_cli(env, "audit", "verify", check=False)
    assert done.returncode == 1
    assert "first bad record within 2..2" in done.stderr


def test_verify_splits_a_long_log_over_processes(data_dir: Path) -> None:
    """A log past verify_split.MIN_RECORDS verifies read by two processes, or by one when
    asked, and a record edited in the second process's half is named as one process names
    it (test_tamper.py runs every kind of tampering both ways); a process count below 1 is
    refused."""
    from donjon.audit import AuditEvent, AuditLog, verify_split
    from donjon.audit.entry import encode_entry
    from donjon.store import connect

    env = donjon_env(data_dir)
    run_cli(env, "init", "--json")
    engine = connect(f"sqlite:///{data_dir / 'donjon.db'}")
    log = AuditLog(
        engine,
        SigningKey.load(data_dir / "audit-signing.key"),
        checkpoint_file=data_dir / "audit-checkpoints.jsonl",
    )
    entry = encode_entry(AuditEvent("key:a", "function.invoke", "f@1", "ok", {"i": 0}))
    total = verify_split.MIN_RECORDS + 5_000
    while log.size < total:
        log._append([entry] * min(20_000, total - log.size))
    log.stop()
    engine.dispose()
    for processes in (2, 1):
        done = json.loads(
            run_cli(
                env, "audit", "verify", "--processes", str(processes), "--output", "json"
            ).stdout
        )
        assert done["ok"] and done["records"] == total and done["processes"] == processes
    bad = total - 100
    with sqlite3.connect(data_dir / "donjon.db") as conn:
        conn.execute(
            "UPDATE audit_log SET record = replace(record, '\"ok\"', '\"no\"') WHERE seq = ?",
            (bad,),
        )
    failed = run_cli(env, "audit", "verify", "--processes", "2", check=False)
    assert failed.returncode == 1 and f"first bad record {bad}" in failed.stderr, failed.stderr
    refused = run_cli(env, "audit", "verify", "--processes", "0", check=False)
    assert refused.returncode == 2 and "--processes" in refused.stderr
