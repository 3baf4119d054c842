"""The answer to a request under /fn/ that no http trigger serves (its path and method).

A path with a public trigger is no secret: a method it does not declare (a browser's
CORS preflight, a HEAD, a DELETE) is a 405 naming the methods its public triggers
take, and no failed authentication (each used to be a 401 audited as `auth.denied`,
so one address's browsers raised the monitor's credential stuffing alert against it).
Any other path says nothing to an anonymous caller: only a caller with a valid
credential learns that a route does not exist (404); to anyone else a missing route
looks like a protected one (401, audited).
"""

from __future__ import annotations

from typing import NoReturn

from starlette.requests import Request

from donjon.gateway.access import authenticate
from donjon.gateway.errors import MethodNotAllowed, NotFound
from donjon.gateway.node import Node

__all__ = ["refuse_unrouted"]


async def refuse_unrouted(node: Node, request: Request, request_id: str, path: str) -> NoReturn:
    """`MethodNotAllowed`, `Unauthorized` or `NotFound` for `request`, to `path` ("/x")."""
    allowed = node.registry.public_methods(path)
    if allowed:
        raise MethodNotAllowed(f"{request.method} is not allowed on /fn{path}", allowed)
    await authenticate(node, request, request_id)
    raise NotFound(f"no function serves {request.method} /fn{path}")
