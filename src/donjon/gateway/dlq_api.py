"""/v1/dlq: the dead-letter queue of async invocations, behind `dlq:manage` (admins).

- `GET /v1/dlq[?function=NAME]`: dead-lettered invocations, oldest first.
- `GET /v1/dlq/{invocation_id}`: one, with its event.
- `POST /v1/dlq/{invocation_id}/redrive`: queue it again (attempts and age afresh, under
  its function's current `retry`); audited `invocation.redrive`.
- `POST /v1/dlq/redrive` `{"function": NAME}`: the same for each of a function's.
- `DELETE /v1/dlq[?function=NAME]`: delete them; audited `invocation.purge`.
What a redrive or purge does lives in triggers/queue/service.py.

`dlq:manage` is decided on the function each dead invocation was queued for: a role
allowed it on `billing-*` lists, shows, redrives and purges billing functions' events
only (another function's is a 403, audited); purging without `?function=` needs the
action on every function (`*`, no deny).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from donjon.gateway.access import authorize, decide, deny, parse_json, read_body
from donjon.gateway.errors import BadRequest, Forbidden, NotFound
from donjon.gateway.guarded import guarded
from donjon.gateway.node import Node
from donjon.gateway.queue_views import (
    DlqPurged,
    DlqRedrive,
    DlqRedriven,
    InvocationView,
    invocation_view,
)
from donjon.gateway.schemas import parse_body, render
from donjon.identity import Action, Principal
from donjon.triggers.queue import AsyncInvocations, QueuedInvocation, Status

__all__ = ["ROUTES"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_MAX_ID = 64
MAX_REDRIVE_BYTES = 1024


def _service(node: Node) -> AsyncInvocations:
    if node.invocations is None:
        raise NotFound("this node runs no async invocations")
    return node.invocations


def _function(request: Request) -> str | None:
    name = request.query_params.get("function")
    if name is not None and not _NAME.fullmatch(name):
        raise BadRequest(f"{name[:80]!r} is not a function name")
    return name


async def list_dead(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    function = _function(request)
    if function is not None:
        await authorize(node, request, principal, Action.DLQ, request_id, function)

    def reaches(name: str) -> bool:
        return decide(node, principal, Action.DLQ, name).allowed

    dead = [  # only what it reaches, read as such (not the oldest of all, then filtered)
        d for d in await _service(node).dead(function, reaches=reaches) if reaches(d.function)
    ]
    return render([InvocationView(**invocation_view(d, reveal=True)) for d in dead])


async def _dead_one(
    request: Request, node: Node, principal: Principal, request_id: str
) -> QueuedInvocation:
    """The dead invocation the path names, once `principal` may manage its function's."""
    invocation_id: str = request.path_params["invocation_id"]
    found = None if len(invocation_id) > _MAX_ID else await _service(node).get(invocation_id)
    if found is None or found.status is not Status.DEAD:
        raise NotFound(
            f"no dead-lettered invocation {invocation_id[:_MAX_ID]!r}",
            hint="donjon dlq ls lists them",
        )
    await authorize(node, request, principal, Action.DLQ, request_id, found.function)
    return found


async def show_dead(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    found = await _dead_one(request, node, principal, request_id)
    return await node.stored_views.respond(principal.label, found, reveal=True, dead=True)


async def redrive_one(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    invocation_id = (await _dead_one(request, node, principal, request_id)).id
    redriven = await _service(node).redrive(invocation_id, principal.label, request_id)
    return render(InvocationView(**invocation_view(redriven, reveal=True)))


async def redrive_all(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    body = await read_body(request, MAX_REDRIVE_BYTES)
    wanted = parse_body(
        DlqRedrive, await parse_json(node, request, principal.label, body or b"null", request_id)
    )
    await authorize(node, request, principal, Action.DLQ, request_id, wanted.function)
    ids = await _service(node).redrive_all(wanted.function, principal.label, request_id)
    return render(DlqRedriven(redriven=ids))


async def purge(request: Request, node: Node, principal: Principal, request_id: str) -> Response:
    function = _function(request)
    if function is not None:
        await authorize(node, request, principal, Action.DLQ, request_id, function)
    elif not node.policy.reaches_every(principal, Action.DLQ):
        await deny(
            node,
            request,
            principal.label,
            "authz.denied",
            "dlq:manage: purging every function's dead invocations needs it on *",
            request_id,
            {"statement": "no statement allows it on every function"},
        )
        raise Forbidden("purge one function's dead invocations: ?function=NAME")
    count = await _service(node).purge(function, principal.label, request_id)
    return render(DlqPurged(purged=count))


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/dlq", "GET", guarded(Action.DLQ, list_dead)),
    ("/v1/dlq", "DELETE", guarded(Action.DLQ, purge)),
    ("/v1/dlq/redrive", "POST", guarded(Action.DLQ, redrive_all)),
    ("/v1/dlq/{invocation_id}", "GET", guarded(Action.DLQ, show_dead)),
    ("/v1/dlq/{invocation_id}/redrive", "POST", guarded(Action.DLQ, redrive_one)),
]
