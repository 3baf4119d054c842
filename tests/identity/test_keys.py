"""API keys and the role policy."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from donjon.identity import Action, KeyIndex, Principal, Role, hash_key, is_allowed, new_api_key
from donjon.secret import Secret

HK = Secret(b"h" * 32)


def test_key_is_stored_only_as_keyed_hash() -> None:
    """The record holds a 32-byte HMAC, never the key."""
    key = new_api_key(HK, "n", Role.ADMIN)
    assert key.secret.encode() not in key.record.digest
    assert len(key.record.digest) == 32
    assert key.secret not in repr(key)


def test_index_authenticates_and_revokes() -> None:
    """A live key authenticates; after revocation it does not."""
    key = new_api_key(HK, "n", Role.INVOKER, ("a",))
    index = KeyIndex(HK, [key.record])
    principal = index.authenticate(key.secret)
    assert principal is not None and principal.functions == frozenset({"a"})
    index.revoke(key.record.id)
    assert index.authenticate(key.secret) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
        lambda s: s.replace("dj_", "xx_"),
        lambda s: s + "x",
        lambda s: "",
        lambda s: s.split("_")[0] + "_" + "0" * 16 + "_" + s.split("_", 2)[2],
    ],
)
def test_altered_keys_are_refused(mutate: Callable[[str], str]) -> None:
    """Any change to the key, including another id with the same secret, fails."""
    key = new_api_key(HK, "n", Role.ADMIN)
    index = KeyIndex(HK, [key.record])
    assert index.authenticate(mutate(key.secret)) is None


def test_hash_key_matters() -> None:
    """A key hashed under another node's subkey does not authenticate."""
    key = new_api_key(Secret(b"other" * 8), "n", Role.ADMIN)
    assert KeyIndex(HK, [key.record]).authenticate(key.secret) is None


def test_stored_digests_are_hmac_sha256() -> None:
    """A key's digest is HMAC-SHA256 under the node's subkey: keys stored by earlier
    releases still authenticate (a known answer, RFC 4231 test case 2)."""
    digest = hash_key(Secret(b"Jefe"), "what do ya want for nothing?")
    assert digest.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_roles() -> None:
    """admin may do all; developer no keys or audit; invoker only invoke, only its functions."""
    admin = Principal("1", "a", Role.ADMIN)
    dev = Principal("2", "d", Role.DEVELOPER)
    inv = Principal("3", "i", Role.INVOKER, frozenset({"f"}))
    anyinv = Principal("4", "i", Role.INVOKER)
    assert all(is_allowed(admin, a, "f") for a in Action)
    assert is_allowed(dev, Action.DEPLOY) and not is_allowed(dev, Action.KEYS)
    assert not is_allowed(dev, Action.AUDIT)
    assert is_allowed(inv, Action.INVOKE, "f") and not is_allowed(inv, Action.INVOKE, "g")
    assert not is_allowed(inv, Action.DEPLOY) and not is_allowed(inv, Action.READ)
    assert is_allowed(anyinv, Action.INVOKE, "g")


def test_the_index_hashes_a_presented_key_as_hash_key_does() -> None:
    """`KeyIndex.check` hashes with an HMAC keyed once and copied per key presented: the
    digest `hash_key` gives (what every stored record holds), and a copy leaves the keyed
    state as it was, so each check starts from the key alone."""
    keys = [new_api_key(HK, f"n{i}", Role.INVOKER) for i in range(50)]
    index = KeyIndex(HK, [key.record for key in keys])
    for key in keys:
        keyed = index._keyed.copy()
        keyed.update(key.secret.encode())
        assert keyed.digest() == hash_key(HK, key.secret) == key.record.digest
        assert index.authenticate(key.secret) is not None
        wrong = key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B")
        assert index.check(wrong) == (None, "invalid credentials")
    other = KeyIndex(Secret(b"o" * 32), [key.record for key in keys])
    assert all(other.authenticate(key.secret) is None for key in keys)
