"""Storage events pushed by an S3-compatible store: `s3: {source: push, path, secret}`.

MinIO and Ceph POST their event notifications to a webhook endpoint with
``Authorization: Bearer <token>``; Donjon serves it at ``POST /hooks{path}``.
In order: the token is compared, in constant time, with the trigger's secret
(opened from the vault by the node) before anything of the body is read; the
body is read up to the function's `limits.body` (413 past it); it is parsed as
an S3 notification (400 if it is not one: nothing is submitted, and the refusal is
audited as `input.refused`, aggregated per source and window, as a malformed message
from SQS is audited: before, nothing of it reached the log); each record
the trigger's filters take is submitted, and the store gets 202 with the
invocation ids. A refused token is a 401, audited as `auth.denied` (trigger s3,
aggregated per source and window like every failed authentication, so a burst
raises the monitor's credential stuffing alert). A trigger without a secret
takes any caller: the deploy refuses it unless an admin passes
``--unsafe-allow-public``.

The records of one notification are enqueued together, all or none: when the
function's queue cannot take them all (`limits.queued`) or the queue's database
fails, none is queued and the store gets a 503 with `Retry-After` and sends the
notification again. Delivery is still at least once (a node that dies after the
commit and before its 202): handlers tell by the delivery id (bucket/key/sequencer).

A notification past `ON_LOOP_BYTES` (64 KiB) is parsed, and its records' events made, in
the large events' child (large_events.py), by the same function (`pushed_envelopes`),
to the same answers: 5.9 MB held the loop 0.33 s, every other tenant's calls waiting.
"""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.errors import Error
from donjon.gateway.access import deny, new_request_id
from donjon.gateway.errors import BadRequest, Unauthorized
from donjon.gateway.events import body_limit, check_all_made, read_event
from donjon.gateway.large_events import PAST_LOOP
from donjon.gateway.node import Node
from donjon.gateway.problems import problem_from_error
from donjon.lifecycle import Deployed
from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.s3_events import pushed_envelopes
from donjon.triggers.source_errors import SourceError

__all__ = ["handle_s3_push"]

log = logging.getLogger("donjon.sources")


async def handle_s3_push(
    request: Request, node: Node, deployed: Deployed, spec: S3Spec
) -> Response:
    """Take one pushed notification for `deployed`'s s3 trigger `spec`: 202 or a problem."""
    request_id = new_request_id()
    try:
        await _check_token(request, node, deployed.name, spec, request_id)
        body = await read_event(
            request, deployed, body_limit(deployed, node.settings.requests.max_body_bytes)
        )
        # Past ON_LOOP_BYTES, parsed and its events made in a child (large_events.py).
        taken = (
            await node.large_events.made(
                f"s3:{deployed.name}", pushed_envelopes, deployed.name, spec, body
            )
            if body[PAST_LOOP]
            else pushed_envelopes(deployed.name, spec, body)
        )
        if isinstance(taken, tuple):  # not a notification: its MalformedEvent's words
            message, hint = taken
            detail = {"trigger": "s3", "function": deployed.name}
            await deny(
                node, request, "anonymous", "input.refused", message[:300], request_id, detail
            )
            raise BadRequest(message, hint=hint)
        submit_all = node.submit_all
        if submit_all is None:
            raise SourceError("the node is not serving yet", hint="send the event again")
        # Every record first (one refused, 422, submits none); past ON_LOOP_BYTES together,
        # in the child (events.check_all_made).
        events = [envelope.event for envelope in taken]
        await check_all_made(node, f"s3:{deployed.name}", events, deployed)
        # All or none: a function whose queue cannot take every record (limits.queued)
        # takes none of them (503 with Retry-After: the store sends it again).
        ids = await submit_all(taken)
    except Error as e:
        return problem_from_error(e, request_id=request_id)
    return JSONResponse(
        {"accepted": len(ids), "invocations": ids},
        status_code=202,
        headers={"x-request-id": request_id},
    )


async def _check_token(
    request: Request, node: Node, function: str, spec: S3Spec, request_id: str
) -> None:
    """`Unauthorized` (audited) unless the request bears the trigger's secret."""
    if spec.secret is None:  # public by an admin's --unsafe-allow-public at deploy
        return
    try:
        expected = (await node.vault.open_granted([spec.secret]))[spec.secret].strip()
    except Error as e:  # nobody can be told apart: refused, and the operator told why
        log.error("storage hook %s: its secret cannot be opened: %s", request.url.path, e.message)
        expected = ""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip().encode()
    # compare_digest over bytes of any length: the time taken tells nothing of the secret.
    ok = scheme.lower() == "bearer" and hmac.compare_digest(presented, expected.encode())
    if not ok or not expected:
        reason = "missing bearer token" if not presented else "wrong bearer token"
        if not expected:
            reason = "the trigger's secret is not in the vault"
        await deny(
            node,
            request,
            "anonymous",
            "auth.denied",
            f"storage hook: {reason}",
            request_id,
            {"trigger": "s3", "function": function},
        )
        raise Unauthorized(
            "missing or wrong bearer token for this storage hook",
            hint="send Authorization: Bearer <the value of the trigger's secret>",
        )
