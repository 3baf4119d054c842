"""POST /hooks/{path}: signed webhooks, and S3-compatible stores' pushes (hooks_s3.py).

find the trigger by path (404) -> read the body within the function's limits.body
(413) -> verify its signature against the trigger's vault secret before anything
parses it (401) -> refuse a delivery id accepted before (401, spending nothing) -> the
function's admission (quarantine, rates, quotas, capacity; trigger "webhook") -> the event it
makes checked against the function's input_schema (422) -> submit it as an async
invocation -> 202 with the invocation's id. What each step does lives in
triggers/webhooks/; this handler parses, calls it, renders. Refusals are audited
as `auth.denied` (trigger "webhook"), aggregated per source and window like every
failed authentication, so a burst of bad signatures raises the monitor's
credential stuffing alert without a record per request.

A body past `ON_LOOP_BYTES` (64 KiB) is read (a Standard or Stripe body's event type
and id, once its signature checked out on the loop) and made into the event in the
large events' child (large_events.py), by the same functions, to the same answers:
a 5.9 MB standard delivery held the loop 0.64 s, every other tenant's calls waiting.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from donjon.errors import Error
from donjon.gateway.access import deny, new_request_id
from donjon.gateway.admission import admit, busy_given_back, give_back
from donjon.gateway.errors import NotFound
from donjon.gateway.events import body_limit, check_made, read_event
from donjon.gateway.hooks_s3 import handle_s3_push
from donjon.gateway.large_events import PAST_LOOP
from donjon.gateway.node import Node
from donjon.gateway.problems import problem_from_error, quarantined
from donjon.gateway.schemas import render
from donjon.gateway.views import WebhookAccepted
from donjon.lifecycle import Deployed
from donjon.manifest.event_triggers import S3Spec, WebhookSpec
from donjon.monitor.quarantine import FunctionQuarantined
from donjon.triggers.envelope import Envelope, Submit
from donjon.triggers.queue import QueueFull
from donjon.triggers.webhooks import BadDelivery, OffLoop, WebhookMisconfigured, WebhookService

__all__ = ["handle_hook"]

#: The longest path under /hooks looked up (longer: not found, never a lookup).
_MAX_PATH = 512

P = ParamSpec("P")
T = TypeVar("T")


async def handle_hook(request: Request) -> Response:
    node: Node = request.app.state.node
    hooks: WebhookService = request.app.state.webhooks
    request_id = new_request_id()
    raw = request.path_params["path"]
    path = "/" + raw.strip("/")
    try:
        found = node.registry.hook(path) if len(raw) <= _MAX_PATH else None
        spec = found[1] if found is not None else None
        if found is not None and isinstance(spec, S3Spec):  # a store's push (hooks_s3.py)
            return await handle_s3_push(request, node, found[0], spec)
        if found is None or not isinstance(spec, WebhookSpec):
            await deny(node, request, "anonymous", "webhook.unknown", "no such hook", request_id)
            raise NotFound(f"no webhook at /hooks{path}")
        deployed, submit = found[0], node.submit
        if submit is None:  # set by the app (app.py) before anything is served
            raise WebhookMisconfigured("this node takes no events yet")
        body = await read_event(request, deployed, body_limit(deployed, _max_body(node)))
        # Past ON_LOOP_BYTES, the body read and the event made in a child (large_events.py).
        off_loop = _in_child(node, f"webhook:{deployed.name}") if body[PAST_LOOP] else None
        try:
            verified = await hooks.verify(spec, request.headers, body, off_loop)
            # (the child refusing its event after admission, 503: given back what the
            # admission spent, admission.busy_given_back)
            accepting = hooks.accept(
                deployed.name,
                spec,
                request.headers,
                body,
                verified,
                functools.partial(admit, node, deployed, None, request_id, "webhook"),
                functools.partial(_validated, node, submit, deployed),
                off_loop,
            )
            invocation = await busy_given_back(accepting, node, deployed, None, "webhook")
        except BadDelivery as e:
            await deny(
                node,
                request,
                "anonymous",
                "auth.denied",
                f"webhook {spec.scheme}: {e.reason}",
                request_id,
                {"trigger": "webhook", "function": deployed.name},
            )
            raise
        accepted = WebhookAccepted(
            id=invocation, function=deployed.name, delivery_id=verified.delivery_id or None
        )
        return render(accepted, 202)
    except FunctionQuarantined as e:  # the sender is anyone: not told why
        return quarantined(e, request_id, public=True)
    except Error as e:  # a rate limit's Retry-After is set there
        return problem_from_error(e, request_id=request_id)


def _in_child(node: Node, caller: str) -> OffLoop:
    """Work on a large delivery's body done in the large events' child, for `caller`."""

    def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        return node.large_events.made(caller, fn, *args, **kwargs)

    return run


def _max_body(node: Node) -> int:
    return node.settings.requests.max_body_bytes


async def _validated(node: Node, submit: Submit, deployed: Deployed, envelope: Envelope) -> str:
    """Submit a delivery's event only if the function's input_schema takes it (else
    `InvalidInput`, 422, after admission as on the invoke route; the delivery's replay
    claim is given back, so a corrected resend is taken). Refused for a full queue, it
    is given back what its admission spent: a refused delivery costs the function nothing."""
    await check_made(node, f"webhook:{deployed.name}", envelope.event, deployed)
    try:
        return await submit(envelope)
    except QueueFull:
        await give_back(node, deployed, None, "webhook")
        raise
