"""Envelope encryption of one secret version: AES-256-GCM under a fresh data key.

A sealed version is three pieces a row stores: the value encrypted under a
random 256-bit data key (`nonce || ciphertext+tag`), and that data key wrapped
by a key-encryption key (a `KeyProvider`: a subkey of the master key, or an
external key service). Both are encrypted with associated data naming the
secret, its identity and its version, so a ciphertext or a wrapped key moved
to another row (another secret, another version, a deleted and re-created
secret of the same name) fails to decrypt instead of yielding a wrong value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from donjon.vault.errors import VaultError

__all__ = ["NONCE_BYTES", "Sealed", "aad_for", "gcm_decrypt", "gcm_encrypt"]

NONCE_BYTES = 12
DATA_KEY_BYTES = 32


def aad_for(name: str, secret_id: str, version: int, part: str) -> bytes:
    """What binds a ciphertext (`part`: "value" or "data-key") to its row."""
    return f"donjon-vault/v1\0{part}\0{name}\0{secret_id}\0{version}".encode()


def gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """`nonce || ciphertext || tag` under `key` (32 bytes), with a random 96-bit nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def gcm_decrypt(key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    """The plaintext of `gcm_encrypt`'s output, or `VaultError` naming `what` failed."""
    if len(sealed) < NONCE_BYTES + 16:
        raise VaultError(f"{what} is truncated", hint="the database row is damaged")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise VaultError(
            f"{what} does not decrypt: wrong key, tampered, or moved from another row",
            hint="check the master key (DONJON_MASTER_KEY_FILE / DONJON_KMS_COMMAND) and the "
            "database; set the secret again if its row is damaged",
        ) from None


@dataclass(frozen=True)
class Sealed:
    """One encrypted secret version as stored: never the value or the data key in clear."""

    ciphertext: bytes
    wrapped_key: bytes
    #: Which key-encryption key wrapped `wrapped_key` (a provider's key id).
    kek_id: str


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
