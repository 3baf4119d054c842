"""Async invocation over HTTP (triggers/queue/ does the rest).

- `POST /v1/functions/{name}/invoke` with `Prefer: respond-async` (RFC 7240): the same
  authentication, authorization, admission and input checks as a sync call (invoke.py),
  then the event is enqueued, durably, and answered 202 with `{"invocation_id"}`,
  `Location: /v1/invocations/{id}` and `Preference-Applied: respond-async`.
- `GET /v1/invocations/{id}`: its status, attempts, result or error. Only the caller
  that made it and holders of `dlq:manage` (admins) see it; to anyone else it does not
  exist (404). Its error's message only to those who may read the logs of the version it
  was queued for.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.errors import Error
from donjon.gateway.access import authenticate, client_address, new_request_id
from donjon.gateway.admin_rate import take_admin_token
from donjon.gateway.admission import give_back
from donjon.gateway.errors import NotFound
from donjon.gateway.function_errors import may_read_logs
from donjon.gateway.history import history_of, readable
from donjon.gateway.node import Node
from donjon.gateway.problems import problem_from_error
from donjon.gateway.queue_views import InvocationAccepted
from donjon.identity import Action, Principal
from donjon.lifecycle import Deployed
from donjon.triggers.envelope import Envelope
from donjon.triggers.queue import QueuedInvocation, QueueFull

__all__ = ["enqueue_checked", "get_invocation", "respond_async", "wants_async"]

#: The longest invocation id looked up (a UUID is 36 characters).
_MAX_ID = 64


def wants_async(request: Request) -> bool:
    """Whether the request's `Prefer` fields hold the `respond-async` preference."""
    for key, value in request.scope["headers"]:  # `request.headers.getlist("prefer")`'s
        if key != b"prefer":
            continue
        for preference in value.decode("latin-1").split(","):
            name = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if name == "respond-async":
                return True
    return False


async def enqueue_checked(
    node: Node,
    deployed: Deployed,
    principal: Principal,
    body: bytes,
    request: Request,
    request_id: str,
    source: str | None = None,
) -> QueuedInvocation:
    """Enqueue an event its caller's `request` has passed every check with (committed
    before this returns): the invoke API's and the Lambda API's (InvocationType Event).
    Its `invocation.enqueue` record names `request_id` and the caller's address, as a
    sync call's `function.invoke` record does. `source`, its CloudEvents source: the
    request's path unless the route names the function in a form of the caller's own."""
    if node.invocations is None:
        raise NotFound("this node runs no async invocations")
    envelope = Envelope(
        function=deployed.name,
        event=body,
        trigger="invoke",
        source=request.url.path if source is None else source,
        type="dev.donjon.invoke",
        principal=principal.label,
        # A token's roles (its token is not kept): its deliveries keep their limits.
        roles=_token_roles(principal),
        signed_by=principal.signed_by if principal.kind == "jwt" else None,
        signed_key=principal.signed_key if principal.kind == "jwt" else None,
        admitted=True,  # its request passed admission just now
        request_id=request_id,
        client=client_address(request),
    )
    try:
        return await node.invocations.enqueue(envelope)
    except QueueFull:
        # Refused, nothing queued: the rate tokens and the quota unit its admission took
        # are given back (a refused call costs nothing: retrying it would spend them again).
        await give_back(node, deployed, principal, "invoke")
        raise


def _token_roles(principal: Principal) -> tuple[str, ...]:
    """A token caller's roles, whole names within the stored column's 1,024 characters
    (the first decide its limits); () for a key, whose role is read again at delivery."""
    if principal.kind != "jwt":
        return ()
    kept: list[str] = []
    for role in (principal.role, *principal.more_roles):
        if len(" ".join([*kept, role])) > 1024:
            break
        kept.append(role)
    return tuple(kept)


async def respond_async(
    node: Node,
    deployed: Deployed,
    principal: Principal,
    body: bytes,
    request: Request,
    request_id: str,
) -> Response:
    """Enqueue the checked event (committed before this returns) and answer 202."""
    queued = await enqueue_checked(node, deployed, principal, body, request, request_id)
    location = f"/v1/invocations/{queued.id}"
    return JSONResponse(
        InvocationAccepted(
            invocation_id=queued.id, status=queued.status.value, request_id=request_id
        ).model_dump(mode="json"),
        status_code=202,
        headers={
            "location": location,
            "preference-applied": "respond-async",
            "x-request-id": request_id,
        },
    )


async def _may_read_its_logs(
    node: Node, principal: Principal, invocation: QueuedInvocation
) -> bool:
    """Whether `principal` may read the logs of the version the invocation was queued for
    (the one it runs on: gateway/deliveries.py): a name deployed again since is another
    function, perhaps another owner's (gateway/history.py). Queued before versions were
    kept: the logs of the function deployed now, as before."""
    if invocation.version is None:
        deployed = node.registry.get(invocation.function)
        return deployed is not None and may_read_logs(node, principal, deployed)
    runs = await history_of(node, principal, Action.LOGS, invocation.function)
    return readable(invocation.version, runs)


def _may_see(node: Node, principal: Principal, invocation: QueuedInvocation) -> bool:
    if invocation.principal is not None and invocation.principal == principal.label:
        return True
    # dlq:manage as decided on the invocation's function (a role's `billing-*` reaches
    # billing functions' invocations only).
    return node.policy.decide(principal, Action.DLQ, invocation.function).allowed


async def get_invocation(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    invocation_id: str = request.path_params["invocation_id"]
    try:
        principal = await authenticate(node, request, request_id)
        await take_admin_token(node, request, principal, request_id)  # a store read
        found = None
        if node.invocations is not None and len(invocation_id) <= _MAX_ID:
            found = await node.invocations.get(invocation_id)
        if found is None or not _may_see(node, principal, found):
            raise NotFound(f"no invocation {invocation_id[:_MAX_ID]!r}")
        reveal = await _may_read_its_logs(node, principal, found)
        return await node.stored_views.respond(principal.label, found, reveal=reveal)
    except Error as e:
        return problem_from_error(e, request_id=request_id)
