"""The admin API's one door: authenticate, authorize the route's action, run it.

Every route under /v1/ but the invoke paths is wrapped by `guarded`: the
caller is authenticated, spends a token of its admin bucket (admin_rate.py) and is
authorized before the handler runs, and the
subsystems' errors become problem documents (problems.py) with the
request's id, as does a store write that failed for want of space (a 503).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from donjon.errors import Error
from donjon.gateway.access import (
    authenticate,
    authorize,
    check_still_live,
    forbid,
    new_request_id,
)
from donjon.gateway.admin_rate import take_admin_token
from donjon.gateway.history import authorize_history
from donjon.gateway.node import Node
from donjon.gateway.problems import problem_from_error, storage_full_problem
from donjon.identity import Action, Principal
from donjon.lifecycle import DeployBlocked
from donjon.manifest import ManifestError
from donjon.store import storage_full

__all__ = ["Endpoint", "Handler", "guarded"]

log = logging.getLogger("donjon")

#: A route's own work, once its caller is known and allowed: (request, node, principal,
#: request id) -> response.
Handler = Callable[[Request, Node, Principal, str], Awaitable[Response]]
#: What Starlette calls.
Endpoint = Callable[[Request], Awaitable[Response]]


def _resource_of(request: Request, subject: str | None, resource: str | None) -> str | None:
    """The resource the request acts on: the path's `name` (a function's), the path
    parameter `resource` names (a secret's), or with `subject` (the path parameter of a
    `kind:name` subject: a throttle's, a quota's) the name of a ``function:NAME`` subject
    (None for a principal's, a role's, a source's)."""
    if resource is not None:
        return request.path_params.get(resource)
    if subject is None:
        return request.path_params.get("name")
    kind, sep, name = str(request.path_params.get(subject, "")).partition(":")
    return name if sep and kind == "function" else None


async def _authorize_every(
    node: Node, request: Request, principal: Principal, action: Action, request_id: str
) -> None:
    """A subject that names no function (a principal, a role, a source) reaches across
    every function: `Forbidden` (audited) unless the action is allowed on `*` (a role
    allowed `response:manage` on `billing-*` throttles no one's key, frees no throttled
    source and zeroes no role's quota)."""
    if node.policy.reaches_every(principal, action):
        return
    await forbid(
        node,
        request,
        principal,
        f"{action.value} on a subject that names no function needs it on *",
        request_id,
        {"statement": "no statement allows it on every function"},
        "this credential may act on function subjects only (function:NAME)",
    )


def _credential_checked(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Request:
    """`request`, whose body's last part is taken only while `principal`'s credential still
    authenticates (`check_still_live`): a handler changes nothing before its body is whole,
    and a key revoked while a slow body arrived still made its change (a leaked admin key
    minted an admin key that outlived its revocation)."""
    receive = request.receive

    async def checked() -> Message:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            path, method = request.url.path[:256], request.method
            await check_still_live(node, principal, path, request_id, method=method)
        return message

    return Request(request.scope, checked)


def guarded(
    action: Action,
    handler: Handler,
    *,
    self_service: bool = False,
    history: bool = False,
    subject: str | None = None,
    resource: str | None = None,
) -> Endpoint:
    """Authenticate, authorize `action`, then run `handler`.

    With `resource`, the path parameter naming what the action is decided on (a secret:
    a role allowed `secret:write` on `team-a-*` sets and rotates those secrets only).

    With `subject`, the path parameter naming a `kind:name` subject: a ``function:NAME``
    one is authorized on that function, as the routes under /v1/functions/{name} are (a
    role allowed `response:manage` on `billing-*` throttles or sets the quota of
    billing functions only, as it quarantines only them); any other (a principal's, a
    role's, a source's) needs the action on `*`.
    With `self_service`, a principal may also act on its own key (revoke it). With
    `history`, the route reads the history of the function it names (its versions' logs,
    SBOMs, provenance): authorized by `authorize_history`, whose runs of versions the
    handler finds in `request.state.versions` (None: every version).
    """

    async def endpoint(request: Request) -> Response:
        node: Node = request.app.state.node
        request_id = new_request_id()
        try:
            principal = await authenticate(node, request, request_id)
            await take_admin_token(node, request, principal, request_id)
            own_key = (
                self_service
                and principal.kind == "key"
                and request.path_params.get("key_id") == principal.id
            )
            if history:
                request.state.versions = await authorize_history(
                    node, request, principal, action, request_id, request.path_params["name"]
                )
            elif not own_key:
                on = _resource_of(request, subject, resource)
                await authorize(node, request, principal, action, request_id, on)
                if subject is not None and on is None:
                    await _authorize_every(node, request, principal, action, request_id)
            checked = _credential_checked(request, node, principal, request_id)
            response = await handler(checked, node, principal, request_id)
        except ManifestError as e:
            return problem_from_error(e, request_id=request_id, extra={"problems": e.problems})
        except DeployBlocked as e:
            return problem_from_error(
                e, request_id=request_id, extra={"problems": e.problems, "report": e.report_text}
            )
        except Error as e:
            return problem_from_error(e, request_id=request_id)
        except Exception as e:
            if not storage_full(e):
                raise  # a defect: the app's last handler answers 500
            # A store write with no room (its driver's error): answered, not raised, so
            # the connection stays open for the client's next request.
            log.error("request %s: the storage is full (%s)", request_id, type(e).__name__)
            return storage_full_problem(request_id)
        response.headers["x-request-id"] = request_id
        return response

    return endpoint
