"""`donjon vault rekey`: every data key re-wrapped, atomically, and a crash midway survived."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from donjon.secret import Secret
from donjon.store import SecretStore
from donjon.store.audit_outbox import PENDING, Pending
from donjon.store.tables import audit_outbox, secret_versions
from donjon.vault import MasterKey, VaultError
from donjon.vault.keyring import Keyring, open_vault, rekey
from donjon.vault.local import kek_of
from donjon.vault.service import Vault
from vault.conftest import kms_argv


def _fill(vault: Vault) -> None:
    async def fill() -> None:
        await vault.set("a", Secret("alpha-1"), "key:test")
        await vault.rotate("a", Secret("alpha-2"), "key:test")
        await vault.set("b", Secret("beta-1"), "key:test")

    asyncio.run(fill())


def _values(vault: Vault) -> dict[str, str]:
    return asyncio.run(vault.open_granted(["a", "b"]))


def test_rekey_rewraps_every_data_key(store: SecretStore, keyring: Keyring) -> None:
    """Every row moves to the new key; values and ciphertexts unchanged; a new node opens them."""
    vault = open_vault(store, keyring)
    _fill(vault)
    before = {(r.name, r.version): r for r in store.all_versions()}
    result = asyncio.run(rekey(vault, keyring))
    after = {(r.name, r.version): r for r in store.all_versions()}
    assert result.rewrapped == 3
    assert {r.kek_id for r in after.values()} == {result.kek_id}
    assert result.kek_id != kek_of(keyring.master)[0]
    for k, row in after.items():
        assert row.ciphertext == before[k].ciphertext
        assert row.wrapped_key != before[k].wrapped_key
    assert keyring.vault_key_path.exists() and not keyring.pending_path.exists()
    assert os.stat(keyring.vault_key_path).st_mode & 0o077 == 0
    assert _values(vault) == {"a": "alpha-2", "b": "beta-1"}
    assert _values(open_vault(store, keyring)) == {"a": "alpha-2", "b": "beta-1"}
    # Writes after the rekey use the new key.
    asyncio.run(vault.rotate("b", Secret("beta-2"), "key:test"))
    latest = store.latest("b")
    assert latest is not None and latest.kek_id == result.kek_id


def test_second_rekey_retires_the_first_key(store: SecretStore, keyring: Keyring) -> None:
    """After two rekeys the first rekey's key file opens nothing."""
    vault = open_vault(store, keyring)
    _fill(vault)
    asyncio.run(rekey(vault, keyring))
    first = keyring.vault_key_path.read_bytes()
    second = asyncio.run(rekey(vault, keyring))
    assert keyring.vault_key_path.read_bytes() != first
    assert {r.kek_id for r in store.all_versions()} == {second.kek_id}
    assert _values(open_vault(store, keyring)) == {"a": "alpha-2", "b": "beta-1"}


def test_crash_before_commit_keeps_the_old_key(store: SecretStore, keyring: Keyring) -> None:
    """A stray vault.key.new (rekey died before its commit) is deleted; rows open as before."""
    vault = open_vault(store, keyring)
    _fill(vault)
    MasterKey.create(keyring.pending_path)
    reopened = open_vault(store, keyring)
    assert not keyring.pending_path.exists() and not keyring.vault_key_path.exists()
    assert _values(reopened) == {"a": "alpha-2", "b": "beta-1"}


def test_crash_while_the_new_key_is_written_keeps_the_old_key(
    store: SecretStore, keyring: Keyring
) -> None:
    """A vault.key.new cut off by a kill inside `MasterKey.create` (empty: created, not
    yet written) cannot have been committed to: it is deleted and the node opens."""
    vault = open_vault(store, keyring)
    _fill(vault)
    fd = os.open(keyring.pending_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    reopened = open_vault(store, keyring)
    assert not keyring.pending_path.exists() and not keyring.vault_key_path.exists()
    assert _values(reopened) == {"a": "alpha-2", "b": "beta-1"}


def test_crash_after_commit_finishes_the_rename(
    store: SecretStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows committed under vault.key.new but the rename never ran: the next start renames it."""
    vault = open_vault(store, keyring)
    _fill(vault)

    def crash(*_: object) -> None:
        raise SystemExit("killed between the commit and the rename")

    monkeypatch.setattr("donjon.vault.keyring.os.replace", crash)
    with pytest.raises(SystemExit):
        asyncio.run(rekey(vault, keyring))
    monkeypatch.undo()
    assert keyring.pending_path.exists() and not keyring.vault_key_path.exists()
    assert kek_of(keyring.master)[0] not in store.kek_ids()  # the rows had committed
    reopened = open_vault(store, keyring)
    assert keyring.vault_key_path.exists() and not keyring.pending_path.exists()
    assert _values(reopened) == {"a": "alpha-2", "b": "beta-1"}


def test_rekey_of_no_secrets_killed_before_the_rename_keeps_the_recorded_key(
    store: SecretStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rekey of zero secrets whose record committed (in the outbox, "ok" with the new
    key's id) and died before the rename: the next start keeps the key the record names."""
    vault = open_vault(store, keyring)
    old_kek = keyring.local().current_id

    def crash(*_: object) -> None:
        raise SystemExit("killed between the commit and the rename")

    monkeypatch.setattr("donjon.vault.keyring.os.replace", crash)
    pending = Pending(
        "rekey-0",
        {
            "actor": "key:a",
            "action": "vault.rekey",
            "target": "vault",
            "outcome": "ok",
            "detail": {},
        },
    )
    token = PENDING.set(pending)  # as audit/changes.py runs the rekey
    try:
        with pytest.raises(SystemExit):
            asyncio.run(rekey(vault, keyring))
    finally:
        PENDING.reset(token)
    monkeypatch.undo()
    with store._engine.connect() as conn:  # the record committed with the rekey
        (event,) = [json.loads(e) for e in conn.execute(select(audit_outbox.c.event)).scalars()]
    assert event["outcome"] == "ok" and event["detail"]["rewrapped"] == 0
    recorded = event["detail"]["kek_id"]
    assert recorded != old_kek
    open_vault(store, keyring)  # the next start
    assert not keyring.pending_path.exists()
    assert keyring.local().current_id == recorded, "the log says ok for a rekey discarded"
    # A rekey of zero secrets killed before its commit is still undone.
    MasterKey.create(keyring.pending_path)
    open_vault(store, keyring)
    assert not keyring.pending_path.exists() and keyring.local().current_id == recorded


def test_rekey_cancelled_while_its_transaction_runs_keeps_the_key_it_commits(
    store: SecretStore, keyring: Keyring, tmp_path: Path
) -> None:
    """A rekey cancelled (a request cut, a node stopping) while its transaction waits for
    the database, which then commits it: the new key is kept, the running vault and the
    next start open every secret."""
    vault = open_vault(store, keyring)
    _fill(vault)
    old_kek = kek_of(keyring.master)[0]
    blocker = sqlite3.connect(tmp_path / "donjon.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the write lock: the rekey's transaction waits for it
    writing = threading.Event()

    def seen(_c: object, _cur: object, statement: str, *_: object) -> None:
        if "vault_rekeys" in statement:  # the transaction's first write, in its thread
            writing.set()

    event.listen(store._engine, "before_cursor_execute", seen)

    async def cut() -> None:
        task = asyncio.create_task(rekey(vault, keyring))
        assert await asyncio.to_thread(writing.wait, 30), "the rekey never wrote"
        task.cancel()
        await asyncio.sleep(0)  # the cancellation is delivered while the thread waits
        blocker.execute("ROLLBACK")  # the transaction goes on, and commits
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert await vault.open_granted(["a", "b"]) == {"a": "alpha-2", "b": "beta-1"}

    asyncio.run(cut())  # (its end waits for the transaction's thread)
    blocker.close()
    assert old_kek not in store.kek_ids()  # the rows committed under the new key
    assert _values(open_vault(store, keyring)) == {"a": "alpha-2", "b": "beta-1"}


def test_failed_rewrap_changes_nothing(store: SecretStore, keyring: Keyring) -> None:
    """A row that cannot be unwrapped stops the rekey: no row changes, no key file remains."""
    vault = open_vault(store, keyring)
    _fill(vault)
    before = store.all_versions()
    with store._engine.begin() as conn:
        conn.execute(
            update(secret_versions)
            .where(secret_versions.c.name == "b")
            .values(wrapped_key=b"\0" * 60)
        )
    with pytest.raises(VaultError):
        asyncio.run(rekey(vault, keyring))
    after = store.all_versions()
    assert [r.kek_id for r in after] == [r.kek_id for r in before]
    assert not keyring.pending_path.exists() and not keyring.vault_key_path.exists()


def test_rekey_moves_local_rows_to_the_key_provider(
    store: SecretStore, keyring: Keyring, tmp_path: Path
) -> None:
    """With DONJON_KMS_COMMAND set, a rekey moves rows wrapped locally to the provider."""
    _fill(open_vault(store, keyring))
    kms = Keyring(keyring.master, keyring.vault_key_path, kms_argv(tmp_path))
    vault = open_vault(store, kms)
    assert _values(vault) == {"a": "alpha-2", "b": "beta-1"}  # local rows still open
    result = asyncio.run(rekey(vault, kms))
    assert result.rewrapped == 3
    assert all(r.kek_id.startswith("kms:test-") for r in store.all_versions())
    assert _values(open_vault(store, kms)) == {"a": "alpha-2", "b": "beta-1"}
