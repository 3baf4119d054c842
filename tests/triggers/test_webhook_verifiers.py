"""Each webhook scheme's verifier: good deliveries pass; tampered, forged, stale or
malformed ones are refused with the reason, before the body is parsed."""

from __future__ import annotations

import json
import time

import pytest

from donjon.triggers.webhooks import VERIFIERS, BadDelivery, WebhookMisconfigured
from triggers.webhook_signing import github_headers, new_whsec, standard_headers, stripe_headers

BODY = json.dumps({"id": "evt_1", "type": "invoice.paid", "n": 1}).encode()
#: The verifiers' clock in each test, read when it starts (as the signing helpers read
#: theirs): a value taken at import would be minutes old in a long run of the suite.
NOW = time.time()


@pytest.fixture(autouse=True)
def _clock() -> None:
    global NOW  # noqa: PLW0603 - the one clock of the test and of the signing helpers
    NOW = time.time()


def _refused(scheme: str, headers: dict[str, str], body: bytes, secrets: list[str]) -> str:
    with pytest.raises(BadDelivery) as caught:
        VERIFIERS[scheme].verify(headers, body, secrets, NOW)
    return caught.value.reason


# -- standard (signed by the standardwebhooks package) -----------------------------------


def test_standard_good_delivery() -> None:
    """A delivery signed by the standardwebhooks library passes, naming its id and type."""
    secret = new_whsec()
    headers = standard_headers(secret, BODY, "msg_abc")
    verified = VERIFIERS["standard"].verify(headers, BODY, [secret], NOW)
    assert (verified.delivery_id, verified.event_type) == ("msg_abc", "invoice.paid")
    assert verified.remember_until is not None and verified.remember_until > NOW


def test_standard_tampered_body() -> None:
    """One byte changed in the body fails the signature."""
    secret = new_whsec()
    headers = standard_headers(secret, BODY)
    assert _refused("standard", headers, BODY.replace(b"1", b"2"), [secret]) == "signature"


def test_standard_wrong_secret() -> None:
    """A delivery signed with another secret is refused."""
    headers = standard_headers(new_whsec(), BODY)
    assert _refused("standard", headers, BODY, [new_whsec()]) == "signature"


@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_standard_timestamp_outside_tolerance(skew: int) -> None:
    """A timestamp more than 5 minutes old or ahead is refused, however well signed."""
    secret = new_whsec()
    headers = standard_headers(secret, BODY, ts=NOW + skew)
    assert _refused("standard", headers, BODY, [secret]) == "timestamp"


def test_standard_id_swap() -> None:
    """The id is signed: another webhook-id on a signed delivery is refused."""
    secret = new_whsec()
    headers = {**standard_headers(secret, BODY, "msg_a"), "webhook-id": "msg_b"}
    assert _refused("standard", headers, BODY, [secret]) == "signature"


def test_standard_rotated_secret_accepted() -> None:
    """A delivery signed with the previous secret passes while it is still accepted."""
    old, new = new_whsec(), new_whsec()
    headers = standard_headers(old, BODY)
    assert VERIFIERS["standard"].verify(headers, BODY, [new, old], NOW).delivery_id


def test_standard_several_signatures_one_good() -> None:
    """A header listing a bad signature and a good one passes (senders mid-rotation)."""
    secret = new_whsec()
    headers = standard_headers(secret, BODY)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert VERIFIERS["standard"].verify(headers, BODY, [secret], NOW).delivery_id


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": ""},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v2,AAAA"},
        {"webhook-timestamp": "soon"},
        {"webhook-id": "has space"},
        {"webhook-id": "x" * 300},
    ],
)
def test_standard_malformed_headers(change: dict[str, str]) -> None:
    """Missing or malformed headers are refused as malformed, never as a crash."""
    secret = new_whsec()
    headers = {**standard_headers(secret, BODY), **change}
    assert _refused("standard", headers, BODY, [secret]) == "malformed"


def test_standard_secret_not_whsec() -> None:
    """A vault value that is no base64 key is the webhook's misconfiguration (503), said so."""
    headers = standard_headers(new_whsec(), BODY)
    with pytest.raises(WebhookMisconfigured):
        VERIFIERS["standard"].verify(headers, BODY, ["not*base64"], NOW)


# -- github (signed by hand: sha256=<hex HMAC of the raw body>) ----------------------------


def test_github_good_delivery() -> None:
    """A GitHub delivery passes with its X-GitHub-Delivery id and event; no timestamp."""
    headers = github_headers("gh-secret", BODY, "d-1", "push")
    verified = VERIFIERS["github"].verify(headers, BODY, ["gh-secret"], NOW)
    assert (verified.delivery_id, verified.event_type, verified.remember_until) == (
        "d-1",
        "push",
        None,
    )


def test_github_tampered_body_and_wrong_secret() -> None:
    """A changed body or another secret fails the signature."""
    headers = github_headers("gh-secret", BODY)
    assert _refused("github", headers, BODY + b" ", ["gh-secret"]) == "signature"
    assert _refused("github", headers, BODY, ["other"]) == "signature"


def test_github_rotated_secret_accepted() -> None:
    """The previous secret's signature passes while it is accepted."""
    headers = github_headers("old", BODY)
    assert VERIFIERS["github"].verify(headers, BODY, ["new", "old"], NOW).delivery_id


@pytest.mark.parametrize(
    "change",
    [
        {"x-hub-signature-256": "sha1=abcd"},
        {"x-hub-signature-256": "sha256=zz"},
        {"x-hub-signature-256": ""},
    ],
)
def test_github_malformed_signature(change: dict[str, str]) -> None:
    """A signature header of the wrong shape is refused as malformed."""
    headers = {**github_headers("s", BODY), **change}
    assert _refused("github", headers, BODY, ["s"]) == "malformed"


def test_github_missing_delivery_id() -> None:
    """A signed delivery without X-GitHub-Delivery cannot be deduplicated: refused."""
    headers = github_headers("s", BODY)
    del headers["x-github-delivery"]
    assert _refused("github", headers, BODY, ["s"]) == "malformed"


# -- stripe (signed by hand: t=<unix>,v1=<hex HMAC of "t.body">) ---------------------------


def test_stripe_good_delivery() -> None:
    """A Stripe delivery passes; its id and type come from the signed body."""
    headers = stripe_headers("whsec_stripe", BODY)
    verified = VERIFIERS["stripe"].verify(headers, BODY, ["whsec_stripe"], NOW)
    assert (verified.delivery_id, verified.event_type) == ("evt_1", "invoice.paid")


def test_stripe_tampered_body_and_wrong_secret() -> None:
    """A changed body or another secret fails every v1 signature."""
    headers = stripe_headers("s", BODY)
    assert _refused("stripe", headers, BODY.replace(b"evt_1", b"evt_2"), ["s"]) == "signature"
    assert _refused("stripe", headers, BODY, ["t"]) == "signature"


@pytest.mark.parametrize("skew", [-400, 400])
def test_stripe_timestamp_outside_tolerance(skew: int) -> None:
    """t= more than 5 minutes off is refused, however well signed."""
    headers = stripe_headers("s", BODY, ts=NOW + skew)
    assert _refused("stripe", headers, BODY, ["s"]) == "timestamp"


def test_stripe_timestamp_swap() -> None:
    """The timestamp is signed: a fresh t= on an old signature is refused."""
    old = stripe_headers("s", BODY, ts=NOW - 1000)["stripe-signature"]
    forged = f"t={int(NOW)}," + old.split(",", 1)[1]
    assert _refused("stripe", {"stripe-signature": forged}, BODY, ["s"]) == "signature"


def test_stripe_several_v1_one_good() -> None:
    """A header with a stale v1 and a good one passes (Stripe's rolled secrets)."""
    headers = stripe_headers("s", BODY)
    t, v1 = headers["stripe-signature"].split(",")
    headers["stripe-signature"] = f"{t},v1={'00' * 32},{v1},v0=ignored"
    assert VERIFIERS["stripe"].verify(headers, BODY, ["s"], NOW).delivery_id == "evt_1"


@pytest.mark.parametrize(
    "value",
    ["", "t=1", "v1=abcd", "t=x,v1=abcd", "t=1,t=2,v1=ab", "t=1,v1=nothex", "garbage"],
)
def test_stripe_malformed_header(value: str) -> None:
    """Malformed Stripe-Signature headers are refused as malformed."""
    assert _refused("stripe", {"stripe-signature": value}, BODY, ["s"]) == "malformed"


def test_stripe_signed_body_without_id() -> None:
    """A well-signed body that is not a Stripe event (no id) cannot be deduplicated: refused."""
    body = b'{"type": "x"}'
    assert _refused("stripe", stripe_headers("s", body), body, ["s"]) == "malformed"


@pytest.mark.parametrize("timestamp", ["\xb2", "1\xb9", "\u0661\u0662"])
def test_a_timestamp_of_digits_int_refuses_is_malformed(timestamp: str) -> None:
    """Digits to str.isdigit that int() refuses (a superscript two; Arabic-Indic digits,
    which int() would take as 12) are a malformed timestamp, refused like any (a 401),
    not a ValueError and a 500 (helper-124's review)."""
    secret = new_whsec()
    headers = {**standard_headers(secret, BODY, "msg_x"), "webhook-timestamp": timestamp}
    assert _refused("standard", headers, BODY, [secret]) == "malformed"
    stripe = stripe_headers(secret, BODY)
    stripe["stripe-signature"] = stripe["stripe-signature"].replace(
        stripe["stripe-signature"].split(",")[0], f"t={timestamp}"
    )
    assert _refused("stripe", stripe, BODY, [secret]) == "malformed"
