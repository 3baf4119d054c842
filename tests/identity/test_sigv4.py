"""SigV4 verification against requests signed by botocore itself, and the key index's side."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import secrets
import time
from collections.abc import Callable
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from donjon.identity import KeyIndex, new_api_key
from donjon.identity.sigv4 import (
    SignatureRejected,
    SignedRequest,
    check_scope,
    derive_secret,
    parse_authorization,
    signature_matches,
)
from donjon.secret import Secret

HASH_KEY = Secret(b"h" * 32)
SIGV4_KEY = Secret(b"s" * 32)
URL = "https://127.0.0.1:8443/2015-03-31/functions/hello/invocations"
REGION = "us-east-1"


def _sign(
    secret: str,
    key_id: str = "0123456789abcdef",
    body: bytes = b'{"a": 1}',
    *,
    url: str = URL,
    region: str = REGION,
    service: str = "lambda",
    when: dt.datetime | None = None,
    headers: dict[str, str] | None = None,
) -> SignedRequest:
    """A request as botocore's SigV4Auth signs it, as the gateway would receive it."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"X-Amz-Invocation-Type": "RequestResponse", **(headers or {})},
    )
    signer = botocore.auth.SigV4Auth(Credentials(key_id, secret), service, region)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
            signer.add_auth(request)
    path, _, query = url.removeprefix("https://127.0.0.1:8443").partition("?")
    received: dict[str, list[str]] = {"host": ["127.0.0.1:8443"]}
    for name, value in request.headers.items():
        received.setdefault(name.lower(), []).append(value)
    return SignedRequest("POST", path, query, received, body)


def _verify(secret: str, request: SignedRequest, now: dt.datetime | None = None) -> bool:
    auth = parse_authorization(request.headers["authorization"][0])
    amz_date = check_scope(auth, request, region=REGION, now=now or dt.datetime.now(dt.UTC))
    return signature_matches(secret, auth, request, amz_date)


def test_botocore_signature_verifies() -> None:
    """A request botocore signed with the secret verifies with that secret, not another."""
    secret = derive_secret(SIGV4_KEY, "0123456789abcdef", b"d" * 32)
    request = _sign(secret)
    assert _verify(secret, request)
    assert not _verify(derive_secret(SIGV4_KEY, "0123456789abcdef", b"e" * 32), request)


def test_query_and_escaped_names_verify() -> None:
    """A qualifier in the query and a name that needs escaping are canonicalised as signed."""
    secret = "djs_" + secrets.token_urlsafe(32)
    url = URL.replace("hello", "arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Ahello")
    request = _sign(secret, url=url + "?Qualifier=%24LATEST")
    assert _verify(secret, request)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: dataclasses.replace(r, body=b'{"a": 2}'),
        lambda r: dataclasses.replace(r, query="Qualifier=2"),
        lambda r: dataclasses.replace(r, raw_path=r.raw_path.replace("hello", "other")),
        lambda r: dataclasses.replace(r, method="PUT"),
        lambda r: dataclasses.replace(
            r, headers={**r.headers, "x-amz-invocation-type": ["DryRun"]}
        ),
    ],
    ids=["body", "query", "path", "method", "signed-header"],
)
def test_any_change_to_what_was_signed_fails(
    change: Callable[[SignedRequest], SignedRequest],
) -> None:
    """The body, query, path, method and signed headers are all covered by the signature."""
    secret = "djs_" + secrets.token_urlsafe(32)
    request = _sign(secret)
    assert not _verify(secret, change(request))


def test_an_added_unsigned_amz_header_is_refused() -> None:
    """An x-amz-* header the signer did not sign (X-Amz-Log-Type: Tail added) is refused."""
    secret = "djs_" + secrets.token_urlsafe(32)
    request = _sign(secret)
    added = dataclasses.replace(request, headers={**request.headers, "x-amz-log-type": ["Tail"]})
    with pytest.raises(SignatureRejected, match="must be signed"):
        _verify(secret, added)


def test_a_content_hash_that_is_not_the_body_is_refused() -> None:
    """X-Amz-Content-SHA256 (UNSIGNED-PAYLOAD among others) must be the body's own hash."""
    secret = "djs_" + secrets.token_urlsafe(32)
    request = _sign(secret, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    with pytest.raises(SignatureRejected, match="SHA-256"):
        _verify(secret, request)


@pytest.mark.parametrize("minutes", [-16, 16])
def test_dates_beyond_15_minutes_are_refused(minutes: int) -> None:
    """A signature dated more than 15 minutes before or after the node's clock is refused."""
    secret = "djs_" + secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    request = _sign(secret, when=now + dt.timedelta(minutes=minutes))
    with pytest.raises(SignatureRejected, match="X-Amz-Date"):
        _verify(secret, request, now)
    assert _verify(secret, _sign(secret, when=now + dt.timedelta(minutes=minutes // 2)), now)


@pytest.mark.parametrize(
    ("region", "service", "match"),
    [("eu-west-1", "lambda", "region"), (REGION, "s3", "service")],
)
def test_scope_must_name_the_nodes_region_and_lambda(region: str, service: str, match: str) -> None:
    """A signature scoped to another region or service is refused, even with the right secret."""
    secret = "djs_" + secrets.token_urlsafe(32)
    with pytest.raises(SignatureRejected, match=match):
        _verify(secret, _sign(secret, region=region, service=service))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer dj_x",
        "AWS4-HMAC-SHA256 Credential=0123456789abcdef/20260101/us-east-1/lambda/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/lambda/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=0123456789abcdef/20260101/us-east-1/lambda/aws4_request, "
        "SignedHeaders=x-amz-date;host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=0123456789abcdef/20260101/us-east-1/lambda/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=zz",
    ],
)
def test_malformed_authorization_headers_are_refused(header: str) -> None:
    """Wrong scheme, missing parts, a non-Donjon key id, unsorted headers, a bad signature."""
    with pytest.raises(SignatureRejected):
        parse_authorization(header)


def _by(key_id: str, secret: str) -> Callable[[bytes | None], bool]:
    """Whether the secret derived from a digest is `secret` (what the gateway's check asks)."""

    def signed_by(digest: bytes | None) -> bool:
        return digest is not None and hmac.compare_digest(
            derive_secret(SIGV4_KEY, key_id, digest), secret
        )

    return signed_by


def test_key_index_checks_revocation_expiry_and_rotation() -> None:
    """A signature by a good secret still fails for a revoked, expired or rotated-out key."""
    key = new_api_key(HASH_KEY, "ci", "invoker")
    kid = key.record.id
    index = KeyIndex(HASH_KEY, [key.record])
    good = derive_secret(SIGV4_KEY, kid, key.record.digest)
    principal, reason = index.check_signed(kid, _by(kid, good))
    assert principal is not None and principal.id == kid and reason == ""
    assert (
        index.check_signed(kid, _by(kid, "djs_wrong"))[1] == "sigv4: the signature does not match"
    )
    assert index.check_signed("f" * 16, _by(kid, good))[1] == "sigv4: invalid credentials"
    index.add(dataclasses.replace(key.record, expires_at=time.time() - 1))
    assert index.check_signed(kid, _by(kid, good))[1] == "sigv4: expired key"
    rotated = dataclasses.replace(
        key.record,
        digest=b"n" * 32,
        previous_digest=key.record.digest,
        previous_until=time.time() + 60,
    )
    index.add(rotated)
    assert index.check_signed(kid, _by(kid, good))[0] is not None  # the overlap
    index.add(dataclasses.replace(rotated, previous_until=time.time() - 1))
    assert index.check_signed(kid, _by(kid, good))[1] == "sigv4: rotated key past its overlap"
    index.add(key.record)
    index.revoke(kid)
    assert index.check_signed(kid, _by(kid, good))[1] == "sigv4: revoked key"
