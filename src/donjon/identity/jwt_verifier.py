"""Bearer JWTs: which issuer, which key, and every check, before any claim is believed.

Order: size and shape -> header (kid required, no ``crit``) -> the issuer named
by ``iss`` (a registered one, else refused) -> its key for ``kid`` (an unknown
kid refreshes that issuer's JWKS, at most once a minute) -> signature with the
key's own algorithm -> exp, nbf, iat (LEEWAY_S), iss, aud -> sub -> roles.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from donjon import boundedjson
from donjon.errors import Error
from donjon.identity.apikeys import IdentityError
from donjon.identity.issuers import Issuer, IssuerRegistry
from donjon.identity.jwks import KeySet, TrustedKey, refetch_jwks
from donjon.identity.jwt_principal import MAX_SUB, is_subject

__all__ = [
    "LEEWAY_S",
    "MAX_KEYS_AGE_S",
    "MAX_NUMERIC_DATE",
    "MAX_TOKEN_BYTES",
    "REFRESH_INTERVAL_S",
    "JwtVerifier",
    "TokenRejected",
    "VerifiedToken",
    "looks_like_jwt",
    "meant_for_the_platform",
]

log = logging.getLogger("donjon")

#: A bearer JWT longer than this is refused unread (real ID/access tokens: 1-2 KiB).
MAX_TOKEN_BYTES = 8 * 1024
#: Seconds of clock skew allowed on exp, nbf and iat.
LEEWAY_S = 30
#: exp, nbf and iat further from 1970 than this (2**53 s: some 285 million years, where
#: a float still holds every second) are refused: no issuer means them.
MAX_NUMERIC_DATE = 2**53
#: An issuer's JWKS is fetched again (on an unknown kid) at most this often.
REFRESH_INTERVAL_S = 60.0
#: Seconds fetched keys are trusted before they are fetched again (the default).
MAX_KEYS_AGE_S = 300.0

_SEGMENT = r"[A-Za-z0-9_-]+"
_JWT_SHAPE = re.compile(rf"^{_SEGMENT}\.{_SEGMENT}\.[A-Za-z0-9_-]*$")

Fetch = Callable[[str, ssl.SSLContext], Awaitable[KeySet]]
Persist = Callable[[Issuer], Awaitable[None]]


class TokenRejected(IdentityError):
    """A JWT that failed a check; `message` names which (for the audit log, not the caller)."""


@dataclass(frozen=True)
class VerifiedToken:
    issuer: Issuer
    sub: str
    claims: dict[str, Any]
    #: The kid of the issuer's key that signed it, and that key's fingerprint.
    kid: str = ""
    fingerprint: str = ""


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has a JWT's shape (API keys read ``dj_...``)."""
    return token.count(".") == 2 and not token.startswith("dj_")


def meant_for_the_platform(token: str, issuers: IssuerRegistry) -> bool:
    """Whether `token`, unverified, names a registered issuer and that issuer's audience:
    a credential of this platform, which no function may be handed (http_event.py).

    A token of another issuer or for another audience is not one: the platform refuses
    it, and a public trigger's function may check it itself."""
    if len(token) > MAX_TOKEN_BYTES or not _JWT_SHAPE.match(token):
        return False
    try:
        payload = _json_segment(token.split(".")[1], "payload")
    except TokenRejected:
        return False
    iss = payload.get("iss")
    issuer = issuers.by_iss(iss) if isinstance(iss, str) else None
    if issuer is None:
        return False
    aud = payload.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return issuer.record.audience in audiences


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        # Bounded: a token of nested brackets must not reach json's recursion (a 500).
        value = boundedjson.loads(raw)
    except boundedjson.JSONTooDeep as e:
        raise TokenRejected(f"jwt: the {what} is nested too deep") from e
    except (binascii.Error, ValueError) as e:
        raise TokenRejected(f"jwt: the {what} is not base64url JSON") from e
    if not isinstance(value, dict):
        raise TokenRejected(f"jwt: the {what} is not a JSON object")
    return value


class JwtVerifier:
    """Checks bearer JWTs against the registered issuers."""

    def __init__(
        self,
        issuers: IssuerRegistry,
        tls: ssl.SSLContext,
        *,
        fetch: Fetch = refetch_jwks,
        persist: Persist | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_age_s: float = MAX_KEYS_AGE_S,
    ) -> None:
        self.issuers = issuers
        self._tls = tls
        self._fetch = fetch
        self._persist = persist
        self._clock = clock
        self._max_age_s = max_age_s

    async def verify(self, token: str) -> VerifiedToken:
        """The issuer and claims of a valid token, or `TokenRejected` naming the failed check."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected(f"jwt: token over {MAX_TOKEN_BYTES} bytes")
        if not _JWT_SHAPE.match(token):
            raise TokenRejected("jwt: not three base64url segments")
        head, body, _ = token.split(".")
        header = _json_segment(head, "header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("jwt: no kid in the header")
        if "crit" in header:
            raise TokenRejected("jwt: critical header extensions are not supported")
        # Unverified, only to pick the issuer whose keys and rules then decide.
        iss = _json_segment(body, "payload").get("iss")
        issuer = self.issuers.by_iss(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRejected("jwt: iss names no registered issuer")
        key = issuer.keys.get(kid)
        if key is None:
            key = await self._refresh(issuer, kid)
            if self.issuers.by_iss(issuer.record.issuer) is not issuer:
                # Removed (or replaced) while its keys were fetched: `issuer rm` has
                # answered, and no token of it passes after that.
                raise TokenRejected(f"jwt: issuer {issuer.name} was removed meanwhile")
        if key is None:
            raise TokenRejected(f"jwt: unknown kid for issuer {issuer.name}")
        self._refresh_if_stale(issuer)
        claims = self._decode(token, issuer, key)
        sub = claims.get("sub")
        if not is_subject(sub):
            raise TokenRejected(f"jwt: sub must be a printable string of 1-{MAX_SUB} characters")
        return VerifiedToken(issuer, sub, claims, kid, key.fingerprint)

    def _decode(self, token: str, issuer: Issuer, key: TrustedKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                # The key's own algorithm: a header saying "none" or "HS256" fails here.
                algorithms=[key.algorithm],
                audience=issuer.record.audience,
                issuer=issuer.record.issuer,
                leeway=LEEWAY_S,
                options={
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "require": ["exp", "iat", "iss", "aud", "sub"],
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as e:  # whatever a token makes it raise
            raise TokenRejected(f"jwt: {type(e).__name__}: {e}") from e
        for name in ("exp", "nbf", "iat"):  # PyJWT takes "1700000000" (a string) as well
            value = claims.get(name)
            if name not in claims:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TokenRejected(f"jwt: {name} must be a number of seconds (NumericDate)")
            if abs(value) > MAX_NUMERIC_DATE:  # an exp of 10**400 was a 500 (float() of it)
                raise TokenRejected(
                    f"jwt: {name} must be within {MAX_NUMERIC_DATE} seconds of 1970"
                )
        return claims

    def _refresh_if_stale(self, issuer: Issuer) -> None:
        """Start fetching the issuer's keys again, in the background, if they are past
        their age and no refresh ran within the interval (the token at hand is checked
        with the keys held: the next ones, with what the issuer publishes)."""
        if issuer.record.jwks_url is None or issuer.refreshing is not None:
            return
        if time.time() - issuer.record.refreshed_at < self._max_age_s:
            return
        if issuer.last_refresh and self._clock() - issuer.last_refresh < REFRESH_INTERVAL_S:
            return
        issuer.refreshing = asyncio.get_running_loop().create_task(self._refresh_stale(issuer))

    async def _refresh_stale(self, issuer: Issuer) -> None:
        try:
            await self._refresh(issuer, None)
        except Exception:  # a background task: nobody else would hear of it
            log.exception("issuer %s: storing its refreshed JWKS failed", issuer.name)
        finally:
            issuer.refreshing = None

    async def _refresh(self, issuer: Issuer, kid: str | None) -> TrustedKey | None:
        """Fetch the issuer's JWKS again, for an unknown `kid` or (None) keys past their
        age, at most once per interval; the key of that kid, if there is one now."""
        url = issuer.record.jwks_url
        if url is None:
            return None  # keys given inline change only through the admin
        async with issuer.refresh_lock:
            key = issuer.keys.get(kid) if kid is not None else None
            if key is not None:  # another request may just have refreshed
                return key
            now = self._clock()
            if issuer.last_refresh and now - issuer.last_refresh < REFRESH_INTERVAL_S:
                return None
            issuer.last_refresh = now
            try:
                keys = await self._fetch(url, self._tls)
            except Error as e:
                log.warning("issuer %s: JWKS refresh failed: %s", issuer.name, e.message)
                return None
            issuer.with_keys(keys)
            if self._persist is not None:
                await self._persist(issuer)
            return keys.get(kid) if kid is not None else None
