"""The role every webhook signature scheme plays, and the errors of a refused delivery.

A `Verifier` checks one delivery (its headers and raw body) against the secret's
accepted versions before anything parses the body, in constant time, and says
which delivery it was (`Verified`: the producer's delivery id and event type, and
until when that id must be remembered to refuse a replay). It does no I/O: the
replay cache (store/webhook_replays.py) and the vault are the service's
(service.py).
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from donjon.errors import Error

__all__ = [
    "DELIVERY_ID_MAX",
    "TOLERANCE_S",
    "BadDelivery",
    "Verified",
    "Verifier",
    "WebhookError",
    "WebhookMisconfigured",
    "any_matches",
    "check_timestamp",
    "check_token",
    "header",
]

#: How far a signed timestamp may be from the node's clock, either way (5 minutes, as
#: Stripe and the Standard Webhooks spec recommend).
TOLERANCE_S = 300
#: The longest delivery id or event type taken (longer: a malformed delivery).
DELIVERY_ID_MAX = 255


class WebhookError(Error):
    """A webhook delivery refused, or a webhook that cannot be served."""

    title = "Unauthorized"


class BadDelivery(WebhookError):
    """A delivery whose signature, timestamp or headers do not check out, or a replay.

    `reason` is one of ``malformed``, ``signature``, ``timestamp``, ``replay``: what
    the audit record and metrics say; the sender is told only the message.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, hint=_HINTS.get(reason, ""))
        self.reason = reason


_HINTS = {
    "malformed": "send the headers the webhook's scheme defines (github, stripe, standard)",
    "signature": "sign the raw body with the webhook's secret",
    "timestamp": "sign each delivery as it is sent, with a clock within 5 minutes of ours",
    "replay": "each delivery is taken once: send a new one",
}


class WebhookMisconfigured(WebhookError):
    """The webhook cannot check deliveries: its secret is unusable for its scheme."""

    title = "Webhook misconfigured"


@dataclass(frozen=True)
class Verified:
    """A delivery whose signature checked out."""

    #: The producer's id for this delivery (the replay cache's key).
    delivery_id: str
    #: The producer's event type (``push``, ``invoice.paid``...); "" when it names none.
    event_type: str
    #: When the replay cache may forget `delivery_id` (seconds since the epoch): past
    #: it the signed timestamp is refused anyway; None: the node's replay TTL.
    remember_until: float | None
    #: What the replay cache remembers, when not `delivery_id` (a scheme that does not
    #: sign its delivery id must not let a fresh id make a captured delivery new).
    replay_key: str = ""

    @property
    def replay_id(self) -> str:
        """The replay cache's key for this delivery ("" when there is none)."""
        return self.replay_key or self.delivery_id


class Verifier(ABC):
    """One signature scheme: `check` the signature, then `read` what the signed body says
    (a scheme whose headers say it all reads nothing)."""

    #: The manifest's `scheme:` value.
    scheme: str
    #: The request headers the function's event carries (lower case).
    event_headers: tuple[str, ...]
    #: Whether `read` parses the body (the service reads a large one off the event loop).
    reads_body: bool = False

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> Verified:
        """`BadDelivery` unless `body` is signed under one of `secrets` (newest first);
        nothing of `body` is parsed before its signature checked out."""
        return self.read(self.check(headers, body, secrets, now), body)

    @abstractmethod
    def check(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> Verified:
        """`verify`'s signature and headers: what they say of the delivery, nothing of
        `body` parsed."""

    def read(self, signed: Verified, body: bytes) -> Verified:
        """The delivery `check` found signed, with what its body says (`BadDelivery` if
        the scheme needs it to say more); a pure function of its arguments."""
        return signed


def any_matches(expected: Sequence[bytes], offered: Sequence[bytes]) -> bool:
    """Whether any offered signature equals any expected one; every pair is compared, in
    constant time each, so the time taken says nothing of which (or whether one) matched."""
    found = False
    for mine in expected:
        for theirs in offered:
            found |= hmac.compare_digest(mine, theirs)
    return found


def header(headers: Mapping[str, str], name: str, limit: int = 4096) -> str:
    """The header `name`, stripped; `BadDelivery` (malformed) if absent, empty or longer
    than `limit`."""
    value = headers.get(name, "").strip()
    if not value:
        raise BadDelivery("malformed", f"the delivery has no {name} header")
    if len(value) > limit:
        raise BadDelivery("malformed", f"the {name} header is too long")
    return value


def check_token(value: str, name: str) -> str:
    """A delivery id or event type: printable ASCII without spaces, at most DELIVERY_ID_MAX."""
    if len(value) > DELIVERY_ID_MAX or not all(33 <= ord(c) < 127 for c in value):
        raise BadDelivery("malformed", f"the {name} is not a short printable token")
    return value


def check_timestamp(raw: str, now: float) -> int:
    """A Unix time in seconds within TOLERANCE_S of `now`, or `BadDelivery`."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise BadDelivery("malformed", "the signed timestamp is not a Unix time in seconds")
    ts = int(raw)
    if abs(now - ts) > TOLERANCE_S:
        raise BadDelivery(
            "timestamp",
            f"the signed timestamp is more than {TOLERANCE_S} s from the server's clock",
        )
    return ts
