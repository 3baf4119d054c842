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
from collections.abc import Callable
from dataclasses import dataclass, replace
from hashlib import sha256
from typing import Any

from donjon.errors import Error
from donjon.identity.policy import Principal
from donjon.ratelimit.rates import NO_LIMITS, CallerLimits
from donjon.secret import Secret
from donjon.store.keys import KeyRecord

__all__ = [
    "ApiKey",
    "IdentityError",
    "KeyIndex",
    "hash_key",
    "key_id_of",
    "limits_of",
    "new_api_key",
    "new_secret",
]

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


def key_id_of(presented: str) -> str | None:
    """The key id a presented credential names (`dj_<id>_...`), for the audit; None if
    it is not shaped like a key. The id is not secret: keys are listed by it."""
    m = _KEY_RE.match(presented)
    return m.group(1) if m else None


try:  # CPython's OpenSSL binding, which `hmac.digest` calls: its HMAC object is copied per
    # key checked (`KeyIndex`), where `hmac`'s own class wraps each step in a Python call.
    import _hashlib

    _keyed_hmac: Callable[..., Any] = _hashlib.hmac_new
except ImportError:  # (an interpreter without it: the public class, the same digest)
    _keyed_hmac = hmac.new


def hash_key(hash_key_bytes: Secret[bytes], key: str) -> bytes:
    # One C call (OpenSSL's HMAC), the same digest as hmac.new(...).digest().
    return hmac.digest(hash_key_bytes.reveal(), key.encode(), sha256)


def new_secret(key_id: str) -> str:
    """A fresh key for the id `key_id` (a new key, or a rotated one)."""
    return f"dj_{key_id}_{secrets.token_urlsafe(32)}"


def new_api_key(
    hash_key_bytes: Secret[bytes],
    name: str,
    role: str,
    functions: tuple[str, ...] | None = None,
    expires_at: float | None = None,
    limits: CallerLimits = NO_LIMITS,
) -> ApiKey:
    """Mint a key for `name` with `role`; only its hash goes into the record."""
    key_id = secrets.token_hex(8)
    secret = new_secret(key_id)
    record = KeyRecord(
        id=key_id,
        name=name,
        role=str(role),
        functions=functions,
        digest=hash_key(hash_key_bytes, secret),
        created_at=time.time(),
        expires_at=expires_at,
        rate=limits.rate,
        burst=limits.burst,
        concurrency=limits.concurrency,
    )
    return ApiKey(record=record, secret=secret)


def limits_of(record: KeyRecord) -> CallerLimits:
    """The limits a key record sets (a stored value this version cannot read: none)."""
    if record.rate is None and record.burst is None and record.concurrency is None:
        return NO_LIMITS
    try:
        return CallerLimits(record.rate, record.burst, record.concurrency)
    except Error:  # written by hand into the database: the role's or the default applies
        return NO_LIMITS


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal
    revoked: bool
    expires_at: float | None
    previous_digest: bytes | None
    previous_until: float | None
    #: Who the previous secret is during its overlap: the key's principal, ending at the
    #: overlap's end (`Principal.expires_at`), so what it does outlives it by no second.
    retired: Principal | None = None


def _retired(principal: Principal, record: KeyRecord) -> Principal | None:
    """The principal of `record`'s previous secret (None: it has none): `principal` ending
    when the overlap does (or the key, if sooner). A secret a rotation retired must not
    outlast it: it would rotate its key into a fresh secret, or mint a key, that does."""
    if record.previous_digest is None or record.previous_until is None:
        return None
    ends = record.previous_until
    if record.expires_at is not None:
        ends = min(ends, record.expires_at)
    return replace(principal, expires_at=ends)


def _by(entry: _Entry, current: bool) -> Principal:
    """The principal a checked secret authenticates: the retired one's for the previous."""
    return entry.principal if current or entry.retired is None else entry.retired


class KeyIndex:
    """Keys by id, kept in step with the store by whoever changes keys.

    Revoked keys stay as tombstones, so a refusal can say why (in the audit,
    never to the caller). Last-used times are kept here and written in batches
    (`take_used`), never once per request.
    """

    def __init__(self, hash_key_bytes: Secret[bytes], records: list[KeyRecord]) -> None:
        #: `hash_key`'s HMAC-SHA256 under `hash_key_bytes`, keyed once: a check copies it
        #: (the same digest; the key's two padded blocks are not hashed again per call).
        self._keyed = _keyed_hmac(hash_key_bytes.reveal(), digestmod="sha256")
        self._keys: dict[str, _Entry] = {}
        self._used: dict[str, float] = {}
        for record in records:
            self.add(record)

    def add(self, record: KeyRecord) -> None:
        principal = Principal(
            id=record.id,
            name=record.name,
            role=record.role,
            functions=None if record.functions is None else frozenset(record.functions),
            limits=limits_of(record),
        )
        self._keys[record.id] = _Entry(
            record.digest,
            principal,
            record.revoked_at is not None,
            record.expires_at,
            record.previous_digest,
            record.previous_until,
            _retired(principal, record),
        )

    def principal_of(self, key_id: str) -> Principal | None:
        """The principal of the key `key_id` (revoked or not), if the index holds it."""
        entry = self._keys.get(key_id)
        return entry.principal if entry is not None else None

    def is_live(self, key_id: str, now: float | None = None) -> bool:
        """Whether the key `key_id` is known, not revoked and not expired (async deliveries
        made by a key run only while it is)."""
        return self.ended(key_id, now) is None

    def ended(self, key_id: str, now: float | None = None) -> str | None:
        """Why the key `key_id` no longer authenticates ("revoked key", "expired key", as
        `check` says; unknown: "invalid credentials"), or None while it does."""
        entry = self._keys.get(key_id)
        if entry is None:
            return "invalid credentials"
        if entry.revoked:
            return "revoked key"
        if (
            entry.expires_at is not None
            and (time.time() if now is None else now) >= entry.expires_at
        ):
            return "expired key"
        return None

    def revoke(self, key_id: str) -> None:
        entry = self._keys.get(key_id)
        if entry is not None:
            self._keys[key_id] = _Entry(entry.digest, entry.principal, True, None, None, None)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal behind `presented`, or None. Constant-time on the secret."""
        return self.check(presented)[0]

    def check(self, presented: str, now: float | None = None) -> tuple[Principal | None, str]:
        """(the principal, "") or (None, why it was refused: for the audit only)."""
        m = _KEY_RE.match(presented)
        if m is None:
            return None, "invalid credentials"
        entry = self._keys.get(m[1])  # (`m.group(1)`, without its call)
        # Hash even for unknown ids, so timing does not tell which ids exist.
        keyed = self._keyed.copy()  # (`hash_key(hash_key_bytes, presented)`)
        keyed.update(presented.encode())
        digest = keyed.digest()
        if entry is None:
            hmac.compare_digest(digest, digest)
            return None, "invalid credentials"
        now = time.time() if now is None else now
        current = hmac.compare_digest(digest, entry.digest)
        previous = entry.previous_digest is not None and hmac.compare_digest(
            digest, entry.previous_digest
        )
        if not current and not previous:
            return None, "invalid credentials"
        if entry.revoked:
            return None, "revoked key"
        if entry.expires_at is not None and now >= entry.expires_at:
            return None, "expired key"
        if not current and (entry.previous_until is None or now >= entry.previous_until):
            return None, "rotated key past its overlap"
        self._used[entry.principal.id] = now
        # (`_by`, inline: every keyed request comes here)
        return entry.principal if current or entry.retired is None else entry.retired, ""

    def check_signed(
        self, key_id: str, signed_by: Callable[[bytes | None], bool], now: float | None = None
    ) -> tuple[Principal | None, str]:
        """As `check`, for a request signed (SigV4) with a secret derived from a key's digest.

        `signed_by(digest)` says whether the secret derived from `digest` made the
        signature (None: a stand-in, so unknown ids cost what known ones do).
        """
        entry = self._keys.get(key_id)
        if entry is None:
            signed_by(None)
            return None, "sigv4: invalid credentials"
        now = time.time() if now is None else now
        current = signed_by(entry.digest)
        previous = entry.previous_digest is not None and signed_by(entry.previous_digest)
        if not current and not previous:
            return None, "sigv4: the signature does not match"
        if entry.revoked:
            return None, "sigv4: revoked key"
        if entry.expires_at is not None and now >= entry.expires_at:
            return None, "sigv4: expired key"
        if not current and (entry.previous_until is None or now >= entry.previous_until):
            return None, "sigv4: rotated key past its overlap"
        self._used[entry.principal.id] = now
        return _by(entry, current), ""

    def take_used(self) -> dict[str, float]:
        """The last-used times since the last call (for one batched write)."""
        used, self._used = self._used, {}
        return used

    def note_used(self, key_id: str, ts: float) -> None:
        """Keep a use that could not be written yet (the newer time wins)."""
        self._used[key_id] = max(ts, self._used.get(key_id, ts))

    def last_used(self, key_id: str) -> float | None:
        """A use not yet written, if any."""
        return self._used.get(key_id)
