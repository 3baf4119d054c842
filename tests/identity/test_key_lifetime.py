"""Key expiry, rotation with overlap, and last-used times in the key index."""

from __future__ import annotations

from dataclasses import replace

from donjon.identity import KeyIndex, hash_key, new_api_key, new_secret
from donjon.secret import Secret

HK = Secret(b"k" * 32)


def test_expired_key_is_refused() -> None:
    """Before its expiry a key works; at and after it, it is refused as expired."""
    key = new_api_key(HK, "n", "invoker", expires_at=1000.0)
    index = KeyIndex(HK, [key.record])
    assert index.check(key.secret, now=999.0)[0] is not None
    assert index.check(key.secret, now=1000.0) == (None, "expired key")


def test_rotated_key_overlap() -> None:
    """After rotation both secrets work until the overlap ends; then only the new one."""
    key = new_api_key(HK, "n", "developer")
    fresh = new_secret(key.record.id)
    rotated = replace(
        key.record,
        digest=hash_key(HK, fresh),
        previous_digest=key.record.digest,
        previous_until=2000.0,
    )
    index = KeyIndex(HK, [rotated])
    old, new = index.check(key.secret, now=1999.0)[0], index.check(fresh, now=1999.0)[0]
    assert old is not None and new is not None and old.id == new.id
    assert index.check(key.secret, now=2000.0) == (None, "rotated key past its overlap")
    assert index.check(fresh, now=5000.0)[0] is not None


def test_revoked_key_says_so_in_the_audit_reason() -> None:
    key = new_api_key(HK, "n", "admin")
    index = KeyIndex(HK, [key.record])
    index.revoke(key.record.id)
    assert index.check(key.secret) == (None, "revoked key")
    assert index.check(key.secret[:-1] + "x")[1] == "invalid credentials"


def test_last_used_is_gathered_in_memory_and_taken_in_one_batch() -> None:
    """Each use updates memory only; take_used hands the batch over once."""
    key = new_api_key(HK, "n", "invoker")
    index = KeyIndex(HK, [key.record])
    for t in (10.0, 20.0, 30.0):
        index.check(key.secret, now=t)
    assert index.last_used(key.record.id) == 30.0
    assert index.take_used() == {key.record.id: 30.0}
    assert index.take_used() == {}
