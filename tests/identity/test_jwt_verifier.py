"""The JWT verifier: every check, the algorithm from the key, JWKS parsing and refresh."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
import time
from typing import Any

import pytest

from donjon.identity import (
    Issuer,
    IssuerError,
    IssuerRegistry,
    JwksError,
    JwtVerifier,
    KeySet,
    Role,
    TokenRejected,
    parse_issuer_spec,
    parse_jwks,
    principal_from_claims,
)
from donjon.identity.jwks import MAX_KEYS, internal_address
from donjon.identity.jwt_verifier import (
    LEEWAY_S,
    MAX_KEYS_AGE_S,
    MAX_TOKEN_BYTES,
    REFRESH_INTERVAL_S,
)
from donjon.store import IssuerRecord
from jwt_support import SigningKey, claims, forge, hs256_with, jwks

ISS = "https://idp.example"
AUD = "donjon"
KEY = SigningKey.generate("k1", "RS256")


def _record(name: str = "corp", iss: str = ISS, url: str | None = None, **kw: Any) -> IssuerRecord:
    values: dict[str, Any] = {
        "name": name,
        "issuer": iss,
        "jwks_url": url,
        "jwks": "",
        "audience": AUD,
        "roles_claim": "roles",
        "allowed_roles": ("invoker",),
        "created_at": 0.0,
        "refreshed_at": 0.0,
        **kw,
    }
    return IssuerRecord(**values)


def _verifier(*keys: SigningKey, record: IssuerRecord | None = None, **kw: Any) -> JwtVerifier:
    registry = IssuerRegistry()
    registry.add(Issuer(record or _record(), parse_jwks(json.dumps(jwks(*keys)))))
    return JwtVerifier(registry, ssl.create_default_context(), **kw)


def _verify(verifier: JwtVerifier, token: str) -> Any:
    return asyncio.run(verifier.verify(token))


def _rejected(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as e:
        _verify(verifier, token)
    return e.value.message


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_valid_token_of_each_algorithm_verifies(algorithm: str) -> None:
    """RS256, ES256 and EdDSA keys each verify their own tokens."""
    key = SigningKey.generate("k", algorithm)
    verified = _verify(_verifier(key), key.sign(claims(ISS, AUD)))
    assert verified.sub == "alice" and verified.issuer.name == "corp"


def test_alg_none_is_rejected() -> None:
    """A token with alg none and no signature is refused."""
    token = forge({"alg": "none", "kid": "k1"}, claims(ISS, AUD))
    assert "InvalidAlgorithm" in _rejected(_verifier(KEY), token)


def test_hs256_signed_with_the_public_key_is_rejected() -> None:
    """Algorithm confusion: HS256 keyed with the RSA public key's PEM is refused."""
    token = hs256_with(KEY.public_pem(), {"alg": "HS256", "kid": "k1"}, claims(ISS, AUD))
    assert "InvalidAlgorithm" in _rejected(_verifier(KEY), token)


def test_token_header_alg_other_than_the_keys_is_rejected() -> None:
    """An RS256 key never verifies a token whose header says RS512, even if correctly signed."""
    import jwt as pyjwt

    token = pyjwt.encode(claims(ISS, AUD), KEY.private, algorithm="RS512", headers={"kid": "k1"})
    assert "InvalidAlgorithm" in _rejected(_verifier(KEY), token)


@pytest.mark.parametrize(
    ("claim", "value", "error"),
    [
        ("exp", -LEEWAY_S - 5, "ExpiredSignature"),
        ("nbf", LEEWAY_S + 60, "ImmatureSignature"),
        ("iat", LEEWAY_S + 60, "ImmatureSignature"),
        ("aud", "someone-else", "InvalidAudience"),
    ],
)
def test_time_and_audience_claims_are_checked(claim: str, value: Any, error: str) -> None:
    """Expired, not yet valid, issued in the future, or for another audience: refused."""
    # Times are offsets from now, taken when the test runs (not when it was collected).
    change = {claim: int(time.time()) + value if isinstance(value, int) else value}
    assert error in _rejected(_verifier(KEY), KEY.sign({**claims(ISS, AUD), **change}))


def test_small_clock_skew_is_tolerated() -> None:
    """A token expired a few seconds ago (within the leeway) still verifies."""
    token = KEY.sign({**claims(ISS, AUD), "exp": int(time.time()) - LEEWAY_S // 2})
    assert _verify(_verifier(KEY), token).sub == "alice"


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "sub"])
def test_required_claims_are_required(missing: str) -> None:
    """A token without exp, iat, aud or sub is refused."""
    body = claims(ISS, AUD)
    del body[missing]
    _rejected(_verifier(KEY), KEY.sign(body))


def test_unregistered_issuer_is_rejected() -> None:
    """A token whose iss names no registered issuer is refused, whatever key signed it."""
    assert "no registered issuer" in _rejected(
        _verifier(KEY), KEY.sign(claims("https://evil", AUD))
    )


def test_kid_is_required_and_must_be_known() -> None:
    """No kid, or a kid the issuer does not publish: refused."""
    verifier = _verifier(KEY)
    no_kid = forge({"alg": "RS256"}, claims(ISS, AUD), b"x")
    assert "no kid" in _rejected(verifier, no_kid)
    other = SigningKey.generate("k2")
    assert "unknown kid" in _rejected(verifier, other.sign(claims(ISS, AUD)))


def test_right_kid_from_the_wrong_key_pair_is_rejected() -> None:
    """A key with the trusted kid but another key pair does not verify."""
    impostor = SigningKey("k1", "RS256", SigningKey.generate("x").private)
    assert "InvalidSignature" in _rejected(_verifier(KEY), impostor.sign(claims(ISS, AUD)))


def test_tampered_payload_is_rejected() -> None:
    """Changing the payload of a signed token breaks its signature."""
    head, _, sig = KEY.sign(claims(ISS, AUD)).split(".")
    body = forge({}, claims(ISS, AUD, sub="root", roles=["admin"])).split(".")[1]
    assert "InvalidSignature" in _rejected(_verifier(KEY), f"{head}.{body}.{sig}")


def test_oversized_token_is_rejected_unread() -> None:
    """A token over MAX_TOKEN_BYTES is refused before any parsing."""
    token = KEY.sign(claims(ISS, AUD, pad="x" * MAX_TOKEN_BYTES))
    assert "over" in _rejected(_verifier(KEY), token)


def test_crit_header_is_rejected() -> None:
    """Critical header extensions we do not understand are refused."""
    token = KEY.sign(claims(ISS, AUD), {"crit": ["exp"]})
    assert "critical" in _rejected(_verifier(KEY), token)


def test_roles_are_limited_to_what_the_issuer_may_grant() -> None:
    """Claimed roles the issuer may not grant are dropped; none left means no principal."""
    record = _record(allowed_roles=("developer", "invoker"))
    p = principal_from_claims(record, "bob", {"roles": ["admin", "invoker"]})
    assert p is not None and p.role is Role.INVOKER and p.label == "jwt:corp:bob"
    assert principal_from_claims(record, "bob", {"roles": ["admin"]}) is None
    assert principal_from_claims(record, "bob", {}) is None
    p = principal_from_claims(record, "bob", {"roles": "invoker developer"})
    assert p is not None and p.role is Role.DEVELOPER


class _Fetcher:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.calls = 0

    async def __call__(self, url: str, context: ssl.SSLContext) -> KeySet:
        self.calls += 1
        return parse_jwks(json.dumps(self.document))


def test_unknown_kid_refreshes_at_most_once_per_interval() -> None:
    """An unknown kid fetches the JWKS again, but not twice within REFRESH_INTERVAL_S."""
    now = [1000.0]
    new = SigningKey.generate("k2")
    fetcher = _Fetcher(jwks(KEY))
    verifier = _verifier(
        KEY, record=_record(url="https://idp.example/jwks"), fetch=fetcher, clock=lambda: now[0]
    )
    token = new.sign(claims(ISS, AUD))
    _rejected(verifier, token)
    assert fetcher.calls == 1
    fetcher.document = jwks(KEY, new)  # the issuer rotates in a new key
    _rejected(verifier, token)  # too soon after the last fetch: not fetched again
    assert fetcher.calls == 1
    now[0] += REFRESH_INTERVAL_S
    assert _verify(verifier, token).sub == "alice"
    assert fetcher.calls == 2
    assert _verify(verifier, token).sub == "alice"  # a known kid never fetches
    assert _verify(verifier, KEY.sign(claims(ISS, AUD))).sub == "alice"
    assert fetcher.calls == 2


def test_keys_past_their_age_are_fetched_again_in_the_background() -> None:
    """Keys held past MAX_KEYS_AGE_S: the token at hand is checked with them (no wait on
    the network), a refresh runs beside it, and a key the issuer withdrew is then refused;
    a burst of tokens on stale keys fetches once."""
    fetcher = _Fetcher(jwks(SigningKey.generate("k2")))  # the issuer withdrew k1
    stale = time.time() - MAX_KEYS_AGE_S - 1
    record = _record(url="https://idp.example/jwks", refreshed_at=stale)

    async def attack() -> None:
        verifier = _verifier(KEY, record=record, fetch=fetcher)
        token = KEY.sign(claims(ISS, AUD))
        for _ in range(5):
            assert (await verifier.verify(token)).sub == "alice"
        await asyncio.sleep(0.01)  # the refresh's turn
        assert fetcher.calls == 1
        with pytest.raises(TokenRejected, match="unknown kid"):
            await verifier.verify(token)

    asyncio.run(attack())


def test_inline_jwks_is_never_fetched() -> None:
    """An issuer whose JWKS was given inline has no URL to refresh from."""
    fetcher = _Fetcher(jwks(KEY))
    _rejected(_verifier(KEY, fetch=fetcher), SigningKey.generate("k9").sign(claims(ISS, AUD)))
    assert fetcher.calls == 0


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": []}',
        b'{"keys": [1]}',
        json.dumps({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).encode(),
        json.dumps({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": 5}]}).encode(),
        json.dumps({"keys": [KEY.jwk(), KEY.jwk()]}).encode(),
        json.dumps({"keys": [{**KEY.jwk(), "d": "AQAB"}]}).encode(),
        b"{" + b" " * (300 * 1024) + b"}",
    ],
)
def test_malformed_jwks_is_refused(document: bytes) -> None:
    """Not JSON, no keys, only symmetric keys, broken keys, duplicates, private keys, too big."""
    with pytest.raises(JwksError):
        parse_jwks(document)


def test_short_rsa_keys_are_refused() -> None:
    """An RSA key under 2048 bits makes the JWKS unusable."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    # A weak key is the input under test: the JWKS parser must refuse it.
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    weak = SigningKey("w", "RS256", short)
    with pytest.raises(JwksError, match="2048"):
        parse_jwks(json.dumps(jwks(weak)))


def _rsa_jwk(modulus_bits: int, e: int) -> dict[str, Any]:
    n = secrets.randbits(modulus_bits) | 1 << (modulus_bits - 1) | 1

    def b64(i: int) -> str:
        return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).decode()

    return {"kty": "RSA", "kid": "r", "n": b64(n), "e": b64(e)}


@pytest.mark.parametrize(
    ("modulus_bits", "e", "error"),
    [(4097, 65537, "over 4096 bits"), (3072, 2**40 + 1, "exponent over 32 bits")],
)
def test_rsa_keys_slow_to_check_are_refused(modulus_bits: int, e: int, error: str) -> None:
    """An RSA key over 4096 bits, or with an exponent over 32 bits, makes the JWKS unusable
    (each token naming it would cost milliseconds to check); 4096 bits and e = 65537 do."""
    with pytest.raises(JwksError, match=error):
        parse_jwks(json.dumps({"keys": [_rsa_jwk(modulus_bits, e)]}))
    assert parse_jwks(json.dumps({"keys": [_rsa_jwk(4096, 65537)]})).get("r") is not None


def test_key_alg_must_match_its_type() -> None:
    """An RSA key declaring another algorithm is not used (no key, no set)."""
    with pytest.raises(JwksError):
        parse_jwks(json.dumps({"keys": [{**KEY.jwk(), "alg": "HS256"}]}))


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"name": "Bad Name", "issuer": ISS, "audience": AUD, "jwks_url": "https://x/j"},
        {"name": "corp", "issuer": ISS, "audience": AUD},
        {"name": "corp", "issuer": ISS, "audience": AUD, "jwks_url": "http://x/j"},
        {"name": "corp", "issuer": ISS, "audience": AUD, "jwks_url": "https://x", "jwks": {}},
        {"name": "corp", "issuer": "", "audience": AUD, "jwks_url": "https://x/j"},
        {"name": "corp", "issuer": ISS, "audience": AUD, "jwks_url": "https://x/j",
         "allowed_roles": ["root"]},
        {"name": "corp", "issuer": ISS, "audience": AUD, "jwks_url": "https://x/j",
         "allowed_roles": []},
        {"name": "corp", "issuer": ISS, "audience": AUD, "jwks_url": "https://x/j", "extra": 1},
    ],
)  # fmt: skip
def test_bad_issuer_requests_are_refused(body: Any) -> None:
    """Bad names, no or two JWKS sources, plain http, unknown roles, unknown fields."""
    with pytest.raises(IssuerError):
        parse_issuer_spec(body)


def test_issuer_defaults_are_least_privilege() -> None:
    """Without --allowed-roles an issuer may grant invoker only."""
    spec = parse_issuer_spec(
        {"name": "corp", "issuer": ISS, "audience": AUD, "jwks_url": "https://x/j"}
    )
    assert spec.allowed_roles == ("invoker",) and spec.roles_claim == "roles"


@pytest.mark.parametrize(
    ("url", "internal"),
    [
        ("https://8.8.8.8/jwks", None),
        ("https://[2001:4860:4860::8888]/jwks", None),
        ("https://127.0.0.1:8443/jwks", "127.0.0.1"),
        ("https://[::ffff:10.0.0.1]/jwks", "::ffff:10.0.0.1"),
        ("https://100.64.0.1/jwks", "100.64.0.1"),
        ("https://name-that-does-not-resolve.invalid/jwks", "name-that-does-not-resolve.invalid"),
    ],
)
def test_internal_jwks_addresses_are_told_apart(url: str, internal: str | None) -> None:
    """A JWKS URL's host is internal if any address of it is not global (an IPv4-mapped
    one by its IPv4), or if it does not resolve; a global address is not."""
    assert asyncio.run(internal_address(url)) == internal


def test_a_refetched_jwks_keeps_only_the_keys_it_can_use() -> None:
    """What a trusted issuer publishes later is parsed leniently: a kid named twice is
    trusted under neither key, an unusable key is left out, and none at all is an empty
    set (not an error that would keep the keys held before)."""
    other = SigningKey.generate("k1", "ES256")
    document = {"keys": [KEY.jwk(), other.jwk(), {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}
    with pytest.raises(JwksError, match="two keys"):
        parse_jwks(json.dumps(document))
    assert parse_jwks(json.dumps(document), strict=False).keys == {}
    mixed = {"keys": [SigningKey.generate("k2", "EdDSA").jwk(), {**KEY.jwk(), "d": "AQAB"}]}
    assert sorted(parse_jwks(json.dumps(mixed), strict=False).keys) == ["k2"]
    assert parse_jwks('{"keys": []}', strict=False).keys == {}
    many = {"keys": [{**KEY.jwk(), "kid": f"k{i}"} for i in range(MAX_KEYS + 1)]}
    with pytest.raises(JwksError, match="more than"):
        parse_jwks(json.dumps(many))
    assert len(parse_jwks(json.dumps(many), strict=False).keys) == MAX_KEYS
