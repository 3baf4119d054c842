"""AWS Signature Version 4, verified: the Lambda Invoke API's credentials.

The access key id is a Donjon key's id; the secret is the key's SigV4 secret,
`derive_secret(subkey, digest)`: an HMAC, under a master-key subkey, of the
keyed hash the node already stores for the key. The node recomputes it on each
request from what it holds (nothing new is stored, and the API key itself stays
unrecoverable); the caller gets it once, from `key create` or `key rotate`.
See docs/security.md, "The Lambda Invoke API".

What is checked, each failure a `SignatureRejected` whose reason is for the
audit: the Authorization header's shape and algorithm; `X-Amz-Date` (signed)
within `MAX_SKEW_S` of the node's clock; the credential scope's date (the
request's own), region (the node's) and service (`lambda`); no session token
(`X-Amz-Security-Token`: Donjon issues none); `host` and every `x-amz-*` header
signed (a refusal names at most a few of them, cut short: they are the
sender's); `X-Amz-Content-SHA256`, when sent, equal to the body's hash; the
signature, compared in constant time, over the canonical request built from the
request as received (so a changed body, path, query or signed header fails).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from donjon.identity.apikeys import IdentityError
from donjon.secret import Secret

__all__ = [
    "ALGORITHM",
    "MAX_SKEW_S",
    "SERVICE",
    "Authorization",
    "SignatureRejected",
    "SignedRequest",
    "check_scope",
    "derive_secret",
    "expected_signature",
    "parse_authorization",
    "signature_matches",
]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "lambda"
#: How far X-Amz-Date may be from the node's clock, either way (SigV4's own rule).
MAX_SKEW_S = 15 * 60
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_REGION = re.compile(r"^[a-z0-9-]{1,64}$")
#: What every SigV4 secret starts with, so people and secret scanners can tell it.
_KIND_PREFIX = "djs_"
#: How many header names, and how much of each, a refusal names: they are the sender's
#: (a 64 KiB head of them made a 42 KB audit record and an 80 KB answer).
_NAMED_HEADERS = 3
_NAMED_LENGTH = 64
#: Where AWS clients send a session token (STS), which Donjon never issues.
_STS_HEADER = "x-amz-security-token"


class SignatureRejected(IdentityError):
    """A SigV4 request that does not verify; `message` is for the audit, not the caller."""

    title = "Unauthorized"


@dataclass(frozen=True)
class SignedRequest:
    """A request as received: what its signature covers."""

    method: str
    #: The path as sent, still percent-encoded (the ASGI scope's raw_path).
    raw_path: str
    #: The query string as sent.
    query: str
    #: Every header value of each lowercase name, in the order received.
    headers: dict[str, list[str]]
    body: bytes


@dataclass(frozen=True)
class Authorization:
    """The parts of an `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""

    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def derive_secret(subkey: Secret[bytes], key_id: str, digest: bytes) -> str:
    """The SigV4 secret of the key `key_id` whose stored hash is `digest`."""
    mac = hmac.new(subkey.reveal(), b"sigv4\0" + key_id.encode() + b"\0" + digest, "sha256")
    return _KIND_PREFIX + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def parse_authorization(header: str) -> Authorization:
    """The Authorization header's parts, or `SignatureRejected` saying what is wrong."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRejected(f"sigv4: the algorithm is not {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or name in fields:
            raise SignatureRejected("sigv4: malformed Authorization header")
        fields[name] = value.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise SignatureRejected(
            "sigv4: the Authorization header needs Credential, SignedHeaders and Signature"
        )
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or credential[4] != "aws4_request":
        raise SignatureRejected("sigv4: malformed credential scope")
    key_id, date, region, service, _ = credential
    if not _KEY_ID.match(key_id):
        raise SignatureRejected("sigv4: the access key id is not a Donjon key id")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME.match(h) for h in signed) or list(signed) != sorted(set(signed)):
        raise SignatureRejected("sigv4: SignedHeaders must be sorted lowercase header names")
    if not _HEX64.match(fields["Signature"]):
        raise SignatureRejected("sigv4: the signature is not 64 hex digits")
    return Authorization(key_id, date, region, service, signed, fields["Signature"])


def check_scope(
    auth: Authorization, request: SignedRequest, *, region: str, now: dt.datetime
) -> str:
    """`X-Amz-Date` (returned) and the credential scope, checked against `region` and `now`."""
    dates = request.headers.get("x-amz-date", [])
    if len(dates) != 1:
        raise SignatureRejected("sigv4: exactly one X-Amz-Date header is required")
    try:
        when = dt.datetime.strptime(dates[0], _AMZ_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise SignatureRejected("sigv4: X-Amz-Date is not YYYYMMDDTHHMMSSZ") from None
    skew = (when - now).total_seconds()
    if abs(skew) > MAX_SKEW_S:
        where = "ahead of" if skew > 0 else "behind"
        raise SignatureRejected(
            f"sigv4: X-Amz-Date is {abs(skew):.0f} s {where} the node's clock "
            f"(at most {MAX_SKEW_S} s either way)"
        )
    if auth.date != dates[0][:8]:
        raise SignatureRejected("sigv4: the credential scope's date is not X-Amz-Date's")
    if not _REGION.match(auth.region) or auth.region != region:
        raise SignatureRejected(f"sigv4: the credential scope's region is not {region}")
    if auth.service != SERVICE:
        raise SignatureRejected(f"sigv4: the credential scope's service is not {SERVICE}")
    if _STS_HEADER in request.headers:
        raise SignatureRejected(
            "sigv4: session tokens (X-Amz-Security-Token) are not accepted: sign with a "
            "Donjon key's id and SigV4 secret alone"
        )
    need = {"host", "x-amz-date"} | {h for h in request.headers if h.startswith("x-amz-")}
    missing = sorted(need - set(auth.signed_headers))
    if missing:
        raise SignatureRejected(f"sigv4: headers that must be signed are not: {_names(missing)}")
    absent = [h for h in auth.signed_headers if h not in request.headers]
    if absent:
        raise SignatureRejected(f"sigv4: signed headers not in the request: {_names(absent)}")
    return dates[0]


def _names(headers: Sequence[str]) -> str:
    """The first few of `headers`, each cut short, and how many more: bounded, whatever
    the sender put in its head."""
    shown = [h if len(h) <= _NAMED_LENGTH else h[:_NAMED_LENGTH] + "..." for h in headers]
    more = len(headers) - _NAMED_HEADERS
    return ", ".join(shown[:_NAMED_HEADERS]) + (f" and {more} more" if more > 0 else "")


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _payload_hash(request: SignedRequest) -> str:
    actual = hashlib.sha256(request.body).hexdigest()
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and (len(declared) != 1 or declared[0] != actual):
        # UNSIGNED-PAYLOAD among them: the body is always covered here.
        raise SignatureRejected("sigv4: X-Amz-Content-SHA256 is not the body's SHA-256")
    return actual


def _canonical_request(request: SignedRequest, signed: Sequence[str]) -> str:
    headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in request.headers[name])}\n"
        for name in signed
    )
    return "\n".join(
        (
            request.method.upper(),
            quote(request.raw_path, safe="/~"),
            _canonical_query(request.query),
            headers,
            ";".join(signed),
            _payload_hash(request),
        )
    )


def _signing_key(secret: str, auth: Authorization) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (auth.date, auth.region, auth.service, "aws4_request"):
        key = hmac.new(key, part.encode(), "sha256").digest()
    return key


def expected_signature(
    secret: str, auth: Authorization, request: SignedRequest, amz_date: str
) -> str:
    """The signature `secret` gives `request` (hex), as the signer computes it."""
    canonical = _canonical_request(request, auth.signed_headers)
    to_sign = "\n".join(
        (ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    return hmac.new(_signing_key(secret, auth), to_sign.encode(), "sha256").hexdigest()


def signature_matches(
    secret: str, auth: Authorization, request: SignedRequest, amz_date: str
) -> bool:
    """Whether `auth.signature` is `secret`'s signature of `request`; constant time."""
    expected = expected_signature(secret, auth, request, amz_date)
    return hmac.compare_digest(expected.encode(), auth.signature.encode())
