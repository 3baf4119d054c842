"""`LocalKeyProvider`: the key-encryption key is an HKDF subkey of a key file on this host.

Until the first `donjon vault rekey` that file is the node's master key
(master.key in the data dir, or DONJON_MASTER_KEY_FILE); a rekey writes a
fresh random key, `vault.key`, beside it (rekey.py). Each key is named by a
fingerprint (`local:` + 16 hex digits of a SHA-256 of the subkey), stored with
every wrapped data key, so rows name the key that opens them.
"""

from __future__ import annotations

import hashlib

from donjon.secret import Secret
from donjon.vault.envelope import gcm_decrypt, gcm_encrypt
from donjon.vault.errors import VaultError
from donjon.vault.interface import KeyProvider
from donjon.vault.master import VAULT_KEK_PURPOSE, MasterKey

__all__ = ["LOCAL_PREFIX", "LocalKeyProvider", "kek_of"]

LOCAL_PREFIX = "local:"


def kek_of(key: MasterKey) -> tuple[str, Secret[bytes]]:
    """The key-encryption key derived from `key`, and its id."""
    kek = key.derive(VAULT_KEK_PURPOSE)
    fingerprint = hashlib.sha256(b"donjon-vault-kek-id\0" + kek.reveal()).hexdigest()[:16]
    return LOCAL_PREFIX + fingerprint, kek


class LocalKeyProvider(KeyProvider):
    """Wraps under `current`; unwraps under any key of its ring (older ones during a rekey)."""

    def __init__(self, current: MasterKey, *older: MasterKey) -> None:
        self.current_id, self._current = kek_of(current)
        self._ring = dict(kek_of(k) for k in older)
        self._ring[self.current_id] = self._current

    async def wrap(self, data_key: bytes, aad: bytes) -> tuple[bytes, str]:
        return gcm_encrypt(self._current.reveal(), data_key, aad), self.current_id

    async def unwrap(self, wrapped: bytes, aad: bytes, kek_id: str) -> bytes:
        kek = self._ring.get(kek_id)
        if kek is None:
            raise VaultError(
                f"the data key was wrapped by key {kek_id}, which this node does not hold",
                hint="start the node with the master key (or DONJON_KMS_COMMAND) that wrapped it",
            )
        return gcm_decrypt(kek.reveal(), wrapped, aad, "a wrapped data key")

    def holds(self, kek_id: str) -> bool:
        return kek_id in self._ring
