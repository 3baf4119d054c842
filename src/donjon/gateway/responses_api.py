"""The monitor's automatic responses over HTTP: list them, undo them, quarantine by hand.

- `GET /v1/responses` (alert:read): the throttles in force and the quarantined functions.
- `POST /v1/functions/{name}/quarantine` (response:manage): stop serving a function,
  with a reason (`{"reason": "..."}`); audited `response.quarantine`.
- `POST /v1/functions/{name}/release` (response:manage): serve it again; audited
  `function.release`.
- `PUT /v1/throttles/{subject}` (response:manage): throttle a subject by hand
  (`{"reason": "...", "duration_s": 3600}`); audited `response.throttle`.
- `DELETE /v1/throttles/{subject}` (response:manage): lift a throttle
  (`principal:key:0123...`, `source:203.0.113.9`, `function:NAME`); audited
  `response.unthrottle`.
What each does lives in monitor/ (quarantine.py, throttles.py); this is the edge.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.gateway.access import parse_json, read_body
from donjon.gateway.errors import BadRequest, NotFound
from donjon.gateway.guarded import guarded
from donjon.gateway.node import Node
from donjon.gateway.read_scope import read_scope
from donjon.identity import Action, Principal
from donjon.manifest.model import NAME_RE
from donjon.monitor import manual
from donjon.monitor.quarantine import MAX_REASON

__all__ = ["ROUTES"]

_FUNCTION_NAME = re.compile(NAME_RE)


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not _FUNCTION_NAME.fullmatch(name):
        raise NotFound(f"no function named {name[:64]!r}")
    return name


def _reason(body: dict[str, object]) -> str:
    """The body's `reason` (1-500 characters, not all white space: as the API describes
    it), kept as one line of printable text: a character that is not printable (a NUL, a
    control, a lone surrogate from a JSON escape) is written as its escape, so no listing,
    record or terminal breaks on it (a lone surrogate made GET /v1/responses a 500)."""
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise BadRequest(f"reason must be 1-{MAX_REASON} characters saying why")
    line = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in " ".join(reason.split())
    )
    return line[:MAX_REASON]


async def list_responses(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    # A reader allowed alert:read on some functions sees their responses only
    # (gateway/read_scope.py): a throttle on a key, a role or a source is node-wide.
    scope = read_scope(node, principal, Action.ALERTS)
    return JSONResponse(
        {
            "throttles": [
                {
                    "subject": t.subject,
                    "rate": t.rate,
                    "since": t.since,
                    "until": t.until,
                    "reason": t.reason,
                    "alert_seq": t.alert_seq,
                }
                for t in node.throttles.active()
                if scope.subject(t.subject)
            ],
            "quarantined": [
                {
                    "function": q.name,
                    "reason": q.reason,
                    "alert_seq": q.alert_seq,
                    "since": q.since,
                    "by": q.by,
                }
                for q in node.quarantines.all()
                if scope.function(q.name)
            ],
        }
    )


async def quarantine_function(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    name = _name(request)
    body = await parse_json(
        node, request, principal.label, await read_body(request, 4096) or b"{}", request_id
    )
    if not isinstance(body, dict) or set(body) - {"reason"}:
        raise BadRequest('the body is {"reason": text}')
    reason = _reason(body)
    if node.registry.get(name) is None:
        raise NotFound(f"no function named {name!r}")
    added = await node.quarantines.quarantine(
        name, reason, by=principal.label, request_id=request_id
    )
    return JSONResponse(
        {"function": name, "quarantined": True, "changed": added}, 201 if added else 200
    )


async def release_function(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    name = _name(request)
    await node.quarantines.release(name, by=principal.label, request_id=request_id)
    return JSONResponse({"function": name, "released": True})


async def lift_throttle(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    await manual.lift(
        node.throttles,
        node.changes,
        request.path_params["subject"],
        by=principal.label,
        request_id=request_id,
    )
    return Response(status_code=204)


_THROTTLE_FIELDS = frozenset({"reason", "duration_s"})


async def add_throttle(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    """Throttle a subject by hand at the node's throttle rate, for `duration_s` (default
    DONJON_MONITOR_THROTTLE_S)."""
    body = await parse_json(
        node, request, principal.label, await read_body(request, 4096) or b"{}", request_id
    )
    if not isinstance(body, dict) or set(body) - _THROTTLE_FIELDS:
        raise BadRequest('the body is {"reason": text, "duration_s": seconds (optional)}')
    reason = _reason(body)
    policy = node.response_policy
    duration = body.get("duration_s", policy.throttle_s)
    if (
        not isinstance(duration, int | float)
        or isinstance(duration, bool)
        or not 1 <= duration <= manual.MAX_DURATION_S
    ):
        raise BadRequest(f"duration_s must be 1 to {manual.MAX_DURATION_S} seconds")
    subject = request.path_params["subject"]
    kind, subject_id = manual.parse_subject(subject)
    if kind == "function" and node.registry.get(subject_id) is None:
        # As a quarantine: a throttle on a name nothing serves would hold back whoever
        # deploys it next (another owner, perhaps), and a mistyped name throttles nothing.
        raise NotFound(f"no function named {subject_id!r}")
    added = await manual.throttle(
        node.throttles,
        node.changes,
        subject,
        count=policy.throttle_count,
        period_s=policy.throttle_period_s,
        duration_s=float(duration),
        reason=reason,
        by=principal.label,
        request_id=request_id,
    )
    return JSONResponse(
        {"subject": added.subject, "rate": added.rate, "until": added.until}, status_code=201
    )


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/responses", "GET", guarded(Action.ALERTS, list_responses)),
    ("/v1/functions/{name}/quarantine", "POST", guarded(Action.RESPONSES, quarantine_function)),
    ("/v1/functions/{name}/release", "POST", guarded(Action.RESPONSES, release_function)),
    # A path: a JWT's subject may hold a slash (`principal:jwt:corp:https://idp/u/1`).
    (
        "/v1/throttles/{subject:path}",
        "PUT",
        guarded(Action.RESPONSES, add_throttle, subject="subject"),
    ),
    (
        "/v1/throttles/{subject:path}",
        "DELETE",
        guarded(Action.RESPONSES, lift_throttle, subject="subject"),
    ),
]
