"""Which keys the node's vault uses, and `donjon vault rekey`.

Local mode (no DONJON_KMS_COMMAND): the key-encryption key is a subkey of the
master key until the first rekey, then of `vault.key`, a random key beside the
master key file. Rekey, holding the vault's write lock (calls keep being
served from opened values; sets wait):

1. a fresh key is written to `vault.key.new` (0600);
2. every data key is unwrapped and wrapped again under it, and all rows are
   updated in ONE database transaction, which also writes the new key's id
   (table `vault_rekeys`) and the rekey's audit record (the outbox,
   store/audit_outbox.py);
3. after the commit, `vault.key.new` replaces `vault.key` (an atomic rename).

The commit decides: a crash before it leaves every row under the old key and a
stray `vault.key.new`, deleted at the next start (and no record: the rekey
did not happen); a crash after it but before the rename leaves the rows under
the new key and its id in `vault_rekeys`, and the next start finishes the
rename (it looks which keys the rows and `vault_rekeys` name). So the record
committed with the rows ("ok", the new key's id) is true in both cases, a rekey
of zero secrets included: with no rows to name the key, `vault_rekeys` alone
says the rekey committed. At no point are the rows unreadable with the files on
disk.

KMS mode: every data key is unwrapped and wrapped again through the key
provider (which wraps under its current key), in one transaction; rows wrapped
by a local key are moved to the provider the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from donjon.durable import sync_directory
from donjon.store import SecretStore
from donjon.store.audit_outbox import note
from donjon.vault.command import CommandKeyProvider
from donjon.vault.interface import KeyProvider
from donjon.vault.local import LocalKeyProvider, kek_of
from donjon.vault.master import KEY_BYTES, MasterKey
from donjon.vault.service import Vault

__all__ = ["Keyring", "RekeyResult", "open_vault", "rekey"]


@dataclass
class Keyring:
    """The key files of a local vault."""

    master: MasterKey
    #: vault.key, beside the master key file (absent until the first rekey).
    vault_key_path: Path
    kms_command: tuple[str, ...] = ()
    kms_timeout_s: float = 10.0

    @property
    def pending_path(self) -> Path:
        return self.vault_key_path.with_name(self.vault_key_path.name + ".new")

    def local(self) -> LocalKeyProvider:
        if self.vault_key_path.exists():
            return LocalKeyProvider(MasterKey.load(self.vault_key_path), self.master)
        return LocalKeyProvider(self.master)


@dataclass(frozen=True)
class RekeyResult:
    rewrapped: int
    kek_id: str


def _providers(keyring: Keyring) -> tuple[KeyProvider, ...]:
    local = keyring.local()
    if keyring.kms_command:
        return CommandKeyProvider(keyring.kms_command, keyring.kms_timeout_s), local
    return (local,)


def open_vault(store: SecretStore, keyring: Keyring) -> Vault:
    """The node's vault; finishes or undoes a rekey a crash interrupted (blocking)."""
    pending = keyring.pending_path
    if pending.exists() and pending.stat().st_size != KEY_BYTES:
        # Killed while `MasterKey.create` wrote it: it fsyncs the key before the rekey
        # goes on, so no commit can name a key whose file is not whole.
        pending.unlink()
    if pending.exists():
        new_id, _ = kek_of(MasterKey.load(pending))
        if new_id in store.kek_ids() or store.rekeyed(new_id):
            os.replace(pending, keyring.vault_key_path)  # the rekey had committed
            sync_directory(pending.parent)
        else:
            pending.unlink()  # it had not: the rows are all under the old key
    return Vault(store, *_providers(keyring))


async def rekey(vault: Vault, keyring: Keyring) -> RekeyResult:
    """Re-wrap every data key under a new key-encryption key (see the module's docstring)."""
    async with vault.writes:
        if keyring.kms_command:
            kms = CommandKeyProvider(keyring.kms_command, keyring.kms_timeout_s)
            note(kek_id="kms")  # in the record committed with the rows (store/audit_outbox.py)
            count = await vault.rewrap_all(kms)
            vault.use(kms, keyring.local())
            return RekeyResult(count, "kms")
        pending = keyring.pending_path
        pending.unlink(missing_ok=True)
        fresh = LocalKeyProvider(MasterKey.create(pending))
        note(kek_id=fresh.current_id)
        try:
            count = await vault.rewrap_all(fresh, committing=fresh.current_id)
        except BaseException:
            # A rekey cancelled once its transaction committed (rewrap_all waits for it),
            # or whose commit failed after the database kept it: the rows name the new
            # key, whose file must stay. (A read that fails leaves the file to the next
            # start's `open_vault`, which decides the same way.)
            if not vault.store.rekeyed(fresh.current_id):
                pending.unlink(missing_ok=True)
                raise
            _keep(pending, keyring)
            vault.use(fresh)
            raise
        _keep(pending, keyring)
        vault.use(fresh)
        return RekeyResult(count, fresh.current_id)


def _keep(pending: Path, keyring: Keyring) -> None:
    """Make the committed rekey's key file the vault's key."""
    os.replace(pending, keyring.vault_key_path)
    sync_directory(pending.parent)
