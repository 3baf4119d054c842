"""JSON Web Key Sets: parsing the keys an issuer trusts, and fetching them.

The signing algorithm of each key comes from the key itself (its ``kty``,
``crv`` and ``alg``), never from a token's header: RS256 for RSA, ES256 for
EC P-256, EdDSA for OKP Ed25519. Any other key (symmetric ``oct`` keys,
encryption keys, other curves) is left out of the set.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from donjon import boundedjson
from donjon.errors import Error

__all__ = [
    "FETCH_TIMEOUT_S",
    "MAX_JWKS_BYTES",
    "JwksError",
    "KeySet",
    "TrustedKey",
    "fetch_jwks",
    "internal_address",
    "parse_jwks",
    "refetch_jwks",
]

#: The largest JWKS document read, fetched or given (real ones are a few KiB).
MAX_JWKS_BYTES = 256 * 1024
#: Seconds a JWKS fetch may take in all (connect, TLS, response).
FETCH_TIMEOUT_S = 5.0
#: Keys in one set, at most.
MAX_KEYS = 100
#: RSA keys shorter than this are refused (NIST SP 800-131A).
MIN_RSA_BITS = 2048
#: RSA keys longer than this, or whose public exponent has more bits than
#: MAX_RSA_EXPONENT_BITS, are refused: each token naming one (anyone's, forged) would
#: cost milliseconds of the event loop to check (a 3072-bit exponent: ~8 ms) instead of
#: tens of microseconds. Identity providers use 2048-4096 bits and e = 65537.
MAX_RSA_BITS = 4096
MAX_RSA_EXPONENT_BITS = 32


#: What a usable JWKS is, for errors that do not say more.
JWKS_HINT = (
    'a JWKS is {"keys": [...]} of public signing keys, each with a kid: RSA (RS256), '
    "EC P-256 (ES256) or OKP Ed25519 (EdDSA)"
)


class JwksError(Error):
    """A JWKS that cannot be fetched, read or used (the hint says what one is, by default)."""

    title = "Bad JWKS"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message, hint=hint or JWKS_HINT)


@dataclass(frozen=True)
class TrustedKey:
    """One verification key and the one algorithm it verifies."""

    kid: str
    algorithm: str
    key: Any  # a `cryptography` public key object
    #: SHA-256 of its SubjectPublicKeyInfo (DER), hex: names this key whatever its kid
    #: (an issuer may give a kid to another key: a queued call stays bound to its own).
    fingerprint: str


@dataclass(frozen=True)
class KeySet:
    """The usable keys of one JWKS document, by kid, and the document itself."""

    keys: dict[str, TrustedKey]
    document: str

    def get(self, kid: str) -> TrustedKey | None:
        return self.keys.get(kid)


def _algorithm(jwk: dict[str, Any]) -> str | None:
    """The one algorithm this key verifies, or None if it is not one we accept."""
    kty, crv, declared = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if kty == "RSA":
        algorithm = "RS256"
    elif kty == "EC" and crv == "P-256":
        algorithm = "ES256"
    elif kty == "OKP" and crv == "Ed25519":
        algorithm = "EdDSA"
    else:
        return None
    if declared is not None and declared != algorithm:
        return None  # e.g. an RSA key meant for PS256 or RSA-OAEP: not ours to use
    if jwk.get("use", "sig") != "sig":
        return None
    return algorithm


def _load(raw: bytes | str) -> Any:
    if len(raw) > MAX_JWKS_BYTES:
        raise JwksError(f"the JWKS is over {MAX_JWKS_BYTES} bytes")
    try:
        return boundedjson.loads(raw)  # fetched from elsewhere: no unbounded recursion
    except boundedjson.JSONTooDeep as e:
        raise JwksError(f"the JWKS is not a JWKS: {e.message}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise JwksError(f"the JWKS is not JSON: {e}") from e


def _check_rsa_size(kid: str, key: Any) -> None:
    """`JwksError` unless the RSA public key is 2048-4096 bits with an exponent of 32 bits
    at most (a longer one is no safer, only slower to check)."""
    hint = f"publish RSA keys of {MIN_RSA_BITS}-{MAX_RSA_BITS} bits with e = 65537 (AQAB)"
    if key.key_size < MIN_RSA_BITS:
        raise JwksError(f"key {kid!r} of the JWKS is RSA under {MIN_RSA_BITS} bits", hint=hint)
    if key.key_size > MAX_RSA_BITS:
        raise JwksError(f"key {kid!r} of the JWKS is RSA over {MAX_RSA_BITS} bits", hint=hint)
    if key.public_numbers().e.bit_length() > MAX_RSA_EXPONENT_BITS:
        raise JwksError(
            f"key {kid!r} of the JWKS is RSA with a public exponent over "
            f"{MAX_RSA_EXPONENT_BITS} bits",
            hint=hint,
        )


def _trusted(i: int, jwk: Any) -> TrustedKey | None:
    """Key `i` of a JWKS as a trusted key; None if it is not one we verify with (or could
    never name); `JwksError` if it claims to be one and is not fit for it."""
    if not isinstance(jwk, dict):
        raise JwksError(f"key {i} of the JWKS is not a JSON object")
    kid = jwk.get("kid")
    algorithm = _algorithm(jwk)
    if algorithm is None or not isinstance(kid, str) or not kid or len(kid) > 256:
        return None
    if any(name in jwk for name in ("d", "p", "q", "dp", "dq", "qi")):
        raise JwksError(
            f"key {kid!r} of the JWKS holds a private key", hint="publish only the public keys"
        )
    try:
        key = jwt.PyJWK(jwk, algorithm).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as e:
        raise JwksError(f"key {kid!r} of the JWKS is not a valid {algorithm} key: {e}") from e
    if algorithm == "RS256":
        _check_rsa_size(kid, key)
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return TrustedKey(kid, algorithm, key, hashlib.sha256(spki).hexdigest())


def parse_jwks(raw: bytes | str, *, strict: bool = True) -> KeySet:
    """The signing keys of a JWKS document; `JwksError` if it is malformed.

    `strict` (a JWKS an admin gives, `issuer add`): a key unfit for its kind, a kid named
    twice, more than MAX_KEYS keys, or no usable key at all is an error too. Not strict
    (what a trusted issuer publishes later, or stored): such keys are left out, and a set
    left with none is empty. The document is the issuer's word on which keys it stands
    behind: a key it withdrew is never kept because the keys published beside it are not
    all usable.
    """
    doc = _load(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('the JWKS must be a JSON object {"keys": [...]}')
    if len(doc["keys"]) > MAX_KEYS and strict:
        raise JwksError(f"the JWKS has more than {MAX_KEYS} keys")
    listed = doc["keys"][:MAX_KEYS]  # not strict: the keys past them are left out
    # The kids of the keys we would verify with, each as often as it is named.
    kids = Counter(
        jwk["kid"]
        for jwk in listed
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str) and _algorithm(jwk)
    )
    keys: dict[str, TrustedKey] = {}
    for i, jwk in enumerate(listed):
        try:
            key = _trusted(i, jwk)
        except JwksError:
            if strict:
                raise
            continue
        if key is None:
            continue
        if kids[key.kid] > 1:
            if strict:
                raise JwksError(
                    f"the JWKS names two keys {key.kid!r}", hint="each kid must be unique"
                )
            continue  # which of them a token means is unknown: none is trusted
        keys[key.kid] = key
    if not keys and strict:
        raise JwksError(
            "the JWKS holds no usable signing key",
            hint="keys need a kid and kty RSA (RS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA)",
        )
    return KeySet(keys, raw if isinstance(raw, str) else raw.decode())


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust store, plus `ca_file` when given; certificates always verified."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


async def internal_address(url: str) -> str | None:
    """The first address of `url`'s host that is not a global one (loopback, private,
    link-local, ...): the host itself if it does not resolve in FETCH_TIMEOUT_S; None if
    all its addresses are global. (The fetch resolves again: a name whose answer changes
    in between is not caught.)"""
    parsed = httpx.URL(url)
    host = parsed.host
    try:
        return host if _internal(host) else None
    except ValueError:
        pass  # a name, not an address
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parsed.port or 443, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError, UnicodeError):
        return host
    addresses = [str(info[4][0]) for info in infos]
    return next((a for a in addresses if _internal(a)), None if addresses else host)


async def fetch_jwks(url: str, context: ssl.SSLContext, *, strict: bool = True) -> KeySet:
    """GET `url` over verified HTTPS, bounded in time and size, and parse it (`parse_jwks`,
    `strict` or not)."""
    if not url.startswith("https://"):
        raise JwksError(f"a JWKS URL must be https:// (got {url!r})")
    try:
        async with (
            asyncio.timeout(FETCH_TIMEOUT_S),  # in all: a server that drips bytes is cut off
            httpx.AsyncClient(
                verify=context, timeout=FETCH_TIMEOUT_S, follow_redirects=False, trust_env=False
            ) as client,
            client.stream(
                "GET", url, headers={"accept": "application/json", "accept-encoding": "identity"}
            ) as response,
        ):
            if response.status_code != 200:
                raise JwksError(f"GET {url} answered {response.status_code}")
            # Bounded as it arrives, so never decoded: a chunk of gzip read whole would
            # expand a thousandfold before the bound saw it.
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise JwksError(
                    f"the JWKS at {url} came with content-encoding {encoding!r}",
                    hint="the node asks for it unencoded (accept-encoding: identity)",
                )
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"the JWKS at {url} is over {MAX_JWKS_BYTES} bytes")
    except TimeoutError as e:
        raise JwksError(f"fetching the JWKS at {url} took over {FETCH_TIMEOUT_S:g} s") from e
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise JwksError(
            f"cannot fetch the JWKS at {url}: {type(e).__name__}: {e}",
            hint="check the URL, and that the node can reach it over verified HTTPS",
        ) from e
    return parse_jwks(bytes(body), strict=strict)


async def refetch_jwks(url: str, context: ssl.SSLContext) -> KeySet:
    """`fetch_jwks` for an issuer already trusted: the keys it now publishes that can be
    used, none if it publishes none (it withdrew them all)."""
    return await fetch_jwks(url, context, strict=False)
