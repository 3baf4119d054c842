"""The node's master key: 32 random bytes in a 0600 file, never logged.

Every other key (API key hashing, audit MACs, the vault's key-encryption key) is
derived from it with HKDF under a purpose label, so no key serves two roles.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from donjon.secret import Secret
from donjon.vault.errors import VaultError

__all__ = [
    "AUDIT_MAC_PURPOSE",
    "AUDIT_OUTBOX_PURPOSE",
    "KEY_HASH_PURPOSE",
    "SIGV4_SECRET_PURPOSE",
    "VAULT_KEK_PURPOSE",
    "VERSION_MAC_PURPOSE",
    "MasterKey",
    "VaultError",
]

_KEY_BYTES = 32
#: A master key file's size (a shorter one was cut off while `create` wrote it).
KEY_BYTES = _KEY_BYTES
#: HKDF labels of the subkeys derived from the master key.
KEY_HASH_PURPOSE = "donjon/api-key-hash/v1"
AUDIT_MAC_PURPOSE = "donjon/audit-head-mac/v1"
#: The MAC of each audit outbox row (store/audit_outbox.py): a row its node did not write
#: is not appended as a change's record.
AUDIT_OUTBOX_PURPOSE = "donjon/audit-outbox-mac/v1"
#: The MAC of each function version's row (store/version_mac.py): a version the node did
#: not write is not served.
VERSION_MAC_PURPOSE = "donjon/function-version-mac/v1"
#: Keys' SigV4 secrets (identity/sigv4.py), each an HMAC of a key's stored hash.
SIGV4_SECRET_PURPOSE = "donjon/sigv4-secret/v1"  # noqa: S105  # nosec B105 - an HKDF label
#: The vault's key-encryption key (vault/local.py), wrapping each secret's data key.
VAULT_KEK_PURPOSE = "donjon/vault-kek/v1"


class MasterKey:
    """The master key; `repr` never shows it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise VaultError(f"master key must be {_KEY_BYTES} bytes, got {len(key)}")
        self._key = Secret(key)

    def __repr__(self) -> str:
        return "MasterKey('**********')"

    @classmethod
    def create(cls, path: Path) -> MasterKey:
        """Write a new random key to `path` (0600); never overwrite one."""
        key = secrets.token_bytes(_KEY_BYTES)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError as e:
            raise VaultError(f"{path} exists; refusing to overwrite a master key") from e
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        """Read the key, refusing one that others can read: another user's file (its
        owner reads it, whatever its mode), or one group or others may read."""
        try:
            st = path.stat()
        except FileNotFoundError as e:
            raise VaultError(f"no master key at {path}", hint="run `donjon init`") from e
        if st.st_uid != os.geteuid():
            raise VaultError(
                f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}):"
                " its owner can read every secret it protects",
                hint=f"chown the file to the user the node runs as, then chmod 600 {path}",
            )
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise VaultError(
                f"{path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o})",
                hint=f"chmod 600 {path}",
            )
        return cls(path.read_bytes())

    def derive(self, purpose: str) -> Secret[bytes]:
        """A 32-byte subkey for one purpose (`purpose` is a fixed label), masked like the
        master key: its `repr` and `str` never show it."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return Secret(hkdf.derive(self._key.reveal()))
