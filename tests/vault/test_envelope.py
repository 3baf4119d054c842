"""Envelope encryption: round trip, the associated data's binding, tampering, wrong keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update

from donjon.secret import Secret
from donjon.store import SecretStore, StoreConflict
from donjon.store.tables import secret_versions
from donjon.vault import MasterKey, SecretNotFound, VaultError
from donjon.vault.keyring import Keyring, open_vault
from donjon.vault.local import LocalKeyProvider
from donjon.vault.names import BadSecret
from donjon.vault.service import Vault

VALUE = "sk_live_ENVELOPE_7f3a9c"


def _vault(store: SecretStore, keyring: Keyring) -> Vault:
    return open_vault(store, keyring)


def _set(vault: Vault, name: str, value: str) -> None:
    asyncio.run(vault.set(name, Secret(value), "key:test"))


def _open(vault: Vault, *names: str) -> dict[str, str]:
    return asyncio.run(vault.open_granted(names))


def _swap(store: SecretStore, target: tuple[str, int], **values: object) -> None:
    with store._engine.begin() as conn:
        conn.execute(
            update(secret_versions)
            .where((secret_versions.c.name == target[0]) & (secret_versions.c.version == target[1]))
            .values(**values)
        )


def test_round_trip(store: SecretStore, keyring: Keyring) -> None:
    """A value set is the value opened, and the row holds neither it nor its data key."""
    vault = _vault(store, keyring)
    _set(vault, "stripe-key", VALUE)
    assert _open(_vault(store, keyring), "stripe-key") == {"stripe-key": VALUE}
    row = store.latest("stripe-key")
    assert row is not None and VALUE.encode() not in row.ciphertext + row.wrapped_key
    assert row.kek_id.startswith("local:")


def test_rotate_gives_the_newest_version(store: SecretStore, keyring: Keyring) -> None:
    """After a rotation the next open gets the new version, each under its own data key."""
    vault = _vault(store, keyring)
    _set(vault, "db", "one")
    assert _open(vault, "db") == {"db": "one"}
    asyncio.run(vault.rotate("db", Secret("two"), "key:test"))
    assert _open(vault, "db") == {"db": "two"}
    rows = store.all_versions()
    assert len(rows) == 2 and rows[0].wrapped_key != rows[1].wrapped_key


def test_ciphertext_moved_to_another_secret_fails(store: SecretStore, keyring: Keyring) -> None:
    """A value's ciphertext and wrapped key copied into another secret's row do not decrypt."""
    vault = _vault(store, keyring)
    _set(vault, "a", "value-of-a")
    _set(vault, "b", "value-of-b")
    a = store.latest("a")
    assert a is not None
    _swap(store, ("b", 1), ciphertext=a.ciphertext, wrapped_key=a.wrapped_key)
    with pytest.raises(VaultError, match="does not decrypt"):
        _open(_vault(store, keyring), "b")


def test_ciphertext_moved_to_another_version_fails(store: SecretStore, keyring: Keyring) -> None:
    """Version 1's ciphertext and wrapped key copied over version 2 do not decrypt."""
    vault = _vault(store, keyring)
    _set(vault, "a", "old")
    asyncio.run(vault.rotate("a", Secret("new"), "key:test"))
    old = store.all_versions()[0]
    _swap(store, ("a", 2), ciphertext=old.ciphertext, wrapped_key=old.wrapped_key)
    with pytest.raises(VaultError, match="does not decrypt"):
        _open(_vault(store, keyring), "a")


def test_recreated_secret_refuses_old_rows(store: SecretStore, keyring: Keyring) -> None:
    """A secret removed and set again does not accept the old secret's version 1 row."""
    vault = _vault(store, keyring)
    _set(vault, "a", "first-life")
    old = store.latest("a")
    asyncio.run(vault.remove("a"))
    _set(vault, "a", "second-life")
    assert old is not None
    _swap(store, ("a", 1), ciphertext=old.ciphertext, wrapped_key=old.wrapped_key)
    with pytest.raises(VaultError, match="does not decrypt"):
        _open(_vault(store, keyring), "a")


@pytest.mark.parametrize("column", ["ciphertext", "wrapped_key"])
def test_tampered_row_fails(store: SecretStore, keyring: Keyring, column: str) -> None:
    """One flipped bit in the ciphertext or the wrapped key fails, never a wrong value."""
    _set(_vault(store, keyring), "a", VALUE)
    row = store.latest("a")
    assert row is not None
    data = bytearray(getattr(row, column))
    data[-1] ^= 1
    _swap(store, ("a", 1), **{column: bytes(data)})
    with pytest.raises(VaultError, match="does not decrypt"):
        _open(_vault(store, keyring), "a")


def test_wrong_master_key_fails(store: SecretStore, keyring: Keyring, tmp_path: Path) -> None:
    """Another master key cannot open the rows (its key id is not the rows')."""
    _set(_vault(store, keyring), "a", VALUE)
    other = Keyring(MasterKey.create(tmp_path / "other.key"), tmp_path / "other-vault.key")
    with pytest.raises(VaultError, match="does not hold"):
        _open(_vault(store, other), "a")
    # Even told the rows' key id, the wrong key fails to unwrap.
    row = store.latest("a")
    assert row is not None
    impostor = LocalKeyProvider(other.master)
    with pytest.raises(VaultError, match="does not decrypt"):
        asyncio.run(impostor.unwrap(row.wrapped_key, b"aad", impostor.current_id))


def test_bad_names_and_values_change_nothing(store: SecretStore, keyring: Keyring) -> None:
    """Names that are not names, empty and oversized values are refused; nothing is stored."""
    vault = _vault(store, keyring)
    for name in ("", "A", "1abc", "a b", "../x", "a" * 64, "é"):
        with pytest.raises(BadSecret):
            _set(vault, name, "v")
    for value in ("", "x" * (64 * 1024 + 1), "a\0b"):
        with pytest.raises(BadSecret):
            _set(vault, "ok", value)
    assert store.names() == set()


def test_set_twice_and_missing_secrets(store: SecretStore, keyring: Keyring) -> None:
    """Set refuses an existing name; rotate, rm and open refuse a missing one."""
    vault = _vault(store, keyring)
    _set(vault, "a", "1")
    with pytest.raises(StoreConflict):
        _set(vault, "a", "2")
    with pytest.raises(SecretNotFound):
        asyncio.run(vault.rotate("nope", Secret("x"), "key:test"))
    with pytest.raises(SecretNotFound):
        asyncio.run(vault.remove("nope"))
    with pytest.raises(SecretNotFound):
        _open(vault, "nope")
    assert _open(vault, "a") == {"a": "1"}
