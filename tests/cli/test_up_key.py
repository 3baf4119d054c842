"""`donjon up`'s deploy key keeps its id across runs, so the examples keep one owner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from donjon.bootstrap import initialize
from donjon.cli.node import _bootstrap_key
from donjon.config import load_settings
from donjon.identity import KeyIndex
from donjon.store import KeyStore, connect
from donjon.vault import KEY_HASH_PURPOSE, MasterKey


def test_up_reissues_the_same_key_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second `up` gets a fresh secret for the same id; the first secret no longer works."""
    for name in [k for k in os.environ if k.startswith("DONJON_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DONJON_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    initialize(settings)
    first_id, first = _bootstrap_key(settings)
    engine = connect(settings.database_url)
    KeyStore(engine).revoke(first_id)  # what `up` does when it is done
    second_id, second = _bootstrap_key(settings)
    records = KeyStore(engine).all()
    engine.dispose()
    assert second_id == first_id and second != first
    index = KeyIndex(MasterKey.load(settings.master_key_path).derive(KEY_HASH_PURPOSE), records)
    assert index.authenticate(second) is not None
    assert index.authenticate(first) is None
    assert [k.name for k in records].count("donjon-up") == 1


@pytest.mark.slow
def test_up_whose_node_never_comes_up_leaves_its_key_revoked_and_audited(tmp_path: Path) -> None:
    """`up` mints its key, then its node refuses to start (no bubblewrap on PATH): the key
    is revoked in the data dir, not left live, and the revocation waits in the audit outbox
    for the next node, as the key's creation does (helper-125's review)."""
    import json
    import subprocess
    import sys

    from donjon.store.audit_outbox import OFFLINE, AuditOutbox
    from harness import donjon_env, free_port

    env = donjon_env(tmp_path / "data")
    env["PATH"] = str(tmp_path / "empty")  # serve refuses to run functions unsandboxed
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "donjon.cli",
            "up",
            "--port",
            str(free_port()),
            "--examples",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 or "bubblewrap" in done.stderr + done.stdout
    engine = connect(f"sqlite:///{tmp_path / 'data' / 'donjon.db'}")
    try:
        (key,) = [k for k in KeyStore(engine).all() if k.name == "donjon-up"]
        rows = AuditOutbox(engine).waiting()
    finally:
        engine.dispose()
    assert key.revoked_at is not None
    events = [r.event for r in rows if r.event is not None]
    waiting = [(r.owner, e["action"]) for r, e in zip(rows, events, strict=True)]
    assert waiting == [(OFFLINE, "key.create"), (OFFLINE, "key.revoke")], waiting
    assert all(json.dumps(e["detail"]).count("donjon-up") for e in events)
