"""The master key file the node loads is this user's alone.

`DONJON_MASTER_KEY_FILE` may name a file outside the data dir (a mounted secret). A
file group or others may read is refused; so, now, is one another user owns: its
owner reads it whatever its mode says, so every secret in the vault and every sealed
log would be theirs to open (helper-154's open finding)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from donjon.vault import VaultError
from donjon.vault.master import MasterKey


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_bytes(secrets.token_bytes(32))
    path.chmod(0o600)
    return path


def test_the_users_own_key_file_loads(tmp_path: Path) -> None:
    key = MasterKey.load(_key_file(tmp_path))
    assert len(key.derive("test").reveal()) == 32


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = _key_file(tmp_path)
    path.chmod(0o640)
    with pytest.raises(VaultError, match="readable by group or others"):
        MasterKey.load(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file another owner")
def test_a_key_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = _key_file(tmp_path)
    os.chown(path, 54321, -1)
    with pytest.raises(VaultError, match="owned by uid 54321") as refused:
        MasterKey.load(path)
    assert refused.value.hint
