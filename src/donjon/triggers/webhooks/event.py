"""The event a webhook's handler sees, and the envelope it is submitted in.

The handler's event is a JSON object::

    {"scheme": "github", "path": "/github",
     "delivery_id": "72d3162e-...", "event_type": "push",
     "headers": {"x-github-event": "push", "content-type": "application/json", ...},
     "body": {...the delivery's JSON body, parsed...}}

`body` is the parsed JSON when the delivery's body is JSON (nested at most 127 levels);
otherwise it is the body as text (UTF-8) with ``"body_encoding": "text"``, or base64
with ``"body_encoding": "base64"`` when it is not UTF-8. `headers` holds only the
content type, the user agent and the scheme's own delivery headers, never the
signature. For an unsigned webhook (deployed with --unsafe-allow-public)
`delivery_id` may be null.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from donjon import boundedjson
from donjon.manifest.event_triggers import WebhookSpec
from donjon.triggers.envelope import Envelope
from donjon.triggers.webhooks.interface import Verified, Verifier

__all__ = ["event_head", "event_json", "webhook_envelope"]

#: Headers every webhook event carries (when sent), besides the scheme's own.
_COMMON_HEADERS = ("content-type", "user-agent")
#: The CloudEvents `type` prefix of each scheme's event types.
_TYPE_PREFIX = {"github": "com.github.", "stripe": "com.stripe.", "standard": "webhook."}


def event_head(
    spec: WebhookSpec, verifier: Verifier, headers: Mapping[str, str], verified: Verified
) -> dict[str, Any]:
    """The event of an accepted delivery (its signature, if any, checked) but its body:
    small (each header at most 1 KiB)."""
    return {
        "scheme": spec.scheme,
        "path": spec.path,
        "delivery_id": verified.delivery_id or None,
        "event_type": verified.event_type or None,
        "headers": {
            name: headers[name][:1024]
            for name in (*_COMMON_HEADERS, *verifier.event_headers)
            if name in headers
        },
    }


def event_json(head: dict[str, Any], body: bytes) -> bytes:
    """The handler's event of a delivery: its `event_head` and its body, as JSON. A pure
    function of its arguments, so a large body's is made off the event loop (gateway/
    hooks.py) to the same bytes."""
    return json.dumps({**head, **_body(body)}, separators=(",", ":")).encode()


def webhook_envelope(
    function: str, spec: WebhookSpec, verified: Verified, event: bytes
) -> Envelope:
    """The envelope of an accepted delivery whose event (`event_json`) is `event`."""
    return Envelope(
        function=function,
        event=event,
        trigger="webhook",
        source=f"/hooks{spec.path}",
        type=_TYPE_PREFIX[spec.scheme] + (verified.event_type or "delivery"),
        delivery_id=verified.delivery_id or None,
    )


#: The deepest body parsed into the event: the event holds it one level down, and must
#: itself parse within boundedjson's limit (its input_schema is checked on it, at each
#: attempt). Before, a body of exactly MAX_DEPTH levels made an event the schema check
#: refused as too deep (400), while one level less ran as JSON and one more as text.
_BODY_DEPTH = boundedjson.MAX_DEPTH - 1


def _body(body: bytes) -> dict[str, Any]:
    if not body:
        return {"body": None}
    try:
        return {"body": boundedjson.loads(body, _BODY_DEPTH)}
    except (ValueError, boundedjson.JSONTooDeep):
        pass
    try:
        return {"body": body.decode("utf-8"), "body_encoding": "text"}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "body_encoding": "base64"}
