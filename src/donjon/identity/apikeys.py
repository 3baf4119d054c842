"""API keys: minting, keyed hashing, and the in-memory index the gateway checks.

A key reads ``dj_<id>_<secret>``. The id is public (it names the key in
listings and audit records); the whole key is stored only as
HMAC-SHA256 under a subkey of the master key, and compared in constant time.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from hashlib import sha256

from donjon.errors import Error
from donjon.identity.policy import Principal, Role
from donjon.secret import Secret
from donjon.store.keys import KeyRecord

__all__ = ["ApiKey", "IdentityError", "KeyIndex", "hash_key", "new_api_key"]

_KEY_RE = re.compile(r"^dj_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class IdentityError(Error):
    """Bad credentials or a bad request about credentials."""

    title = "Unauthorized"


@dataclass(frozen=True)
class ApiKey:
    """A freshly minted key: the only moment the secret exists in clear."""

    record: KeyRecord
    secret: str

    def __repr__(self) -> str:
        return f"ApiKey(id={self.record.id!r}, secret='**********')"


def hash_key(hash_key_bytes: Secret[bytes], key: str) -> bytes:
    return hmac.new(hash_key_bytes.reveal(), key.encode(), sha256).digest()


def new_api_key(
    hash_key_bytes: Secret[bytes], name: str, role: Role, functions: tuple[str, ...] | None = None
) -> ApiKey:
    """Mint a key for `name` with `role`; only its hash goes into the record."""
    key_id = secrets.token_hex(8)
    secret = f"dj_{key_id}_{secrets.token_urlsafe(32)}"
    record = KeyRecord(
        id=key_id,
        name=name,
        role=role.value,
        functions=functions,
        digest=hash_key(hash_key_bytes, secret),
        created_at=time.time(),
    )
    return ApiKey(record=record, secret=secret)


class KeyIndex:
    """Live keys by id, kept in step with the store by whoever changes keys."""

    def __init__(self, hash_key_bytes: Secret[bytes], records: list[KeyRecord]) -> None:
        self._hash_key = hash_key_bytes
        self._live: dict[str, tuple[bytes, Principal]] = {}
        for record in records:
            self.add(record)

    def add(self, record: KeyRecord) -> None:
        if record.revoked_at is not None:
            self._live.pop(record.id, None)
            return
        principal = Principal(
            id=record.id,
            name=record.name,
            role=Role(record.role),
            functions=None if record.functions is None else frozenset(record.functions),
        )
        self._live[record.id] = (record.digest, principal)

    def revoke(self, key_id: str) -> None:
        self._live.pop(key_id, None)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal behind `presented`, or None. Constant-time on the secret."""
        m = _KEY_RE.match(presented)
        if m is None:
            return None
        entry = self._live.get(m.group(1))
        # Hash even for unknown ids, so timing does not tell which ids exist.
        digest = hash_key(self._hash_key, presented)
        if entry is None:
            hmac.compare_digest(digest, digest)
            return None
        if not hmac.compare_digest(digest, entry[0]):
            return None
        return entry[1]
