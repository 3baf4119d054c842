"""The answer to a request under /fn/ that no http trigger serves (its path and method).

A path with a public trigger is no secret: a method it does not declare (a browser's
CORS preflight, a HEAD, a DELETE) is a 405 naming the methods its public triggers
take, and no failed authentication (each used to be a 401 audited as `auth.denied`,
so one address's browsers raised the monitor's credential stuffing alert against it).
Any other path says nothing to an anonymous caller: only a caller with a valid
credential learns that a route does not exist (404); to anyone else a missing route
looks like a protected one (401, audited). And only a caller that may invoke every
function: to one that reaches some only (a custom role's, a key limited to some
functions, a metrics scraper's) a missing route is the 403 of a function it may not
invoke (audited), as the invoke route answers it whether the function exists or not;
a 404 there and a 403 at another tenant's path mapped every path and method served.
"""

from __future__ import annotations

from typing import NoReturn

from starlette.requests import Request

from donjon.gateway.access import authenticate, forbid
from donjon.gateway.errors import MethodNotAllowed, NotFound
from donjon.gateway.node import Node
from donjon.identity import Action

__all__ = ["refuse_unrouted"]


async def refuse_unrouted(node: Node, request: Request, request_id: str, path: str) -> NoReturn:
    """`MethodNotAllowed`, `Unauthorized`, `Forbidden` or `NotFound` for `request`, to
    `path` ("/x")."""
    allowed = node.registry.public_methods(path)
    if allowed:
        raise MethodNotAllowed(f"{request.method} is not allowed on /fn{path}", allowed)
    principal = await authenticate(node, request, request_id)
    if not node.policy.reaches_every(principal, Action.INVOKE):
        await forbid(
            node,
            request,
            principal,
            f"function:invoke on {request.method} /fn{path} denied: no function serves it, "
            "and this credential may invoke some functions only",
            request_id,
            {
                "statement": "no statement allows it on every function",
                "permission": Action.INVOKE.value,
            },
            "this credential does not allow that",
        )
    raise NotFound(f"no function serves {request.method} /fn{path}")
