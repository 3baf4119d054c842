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
