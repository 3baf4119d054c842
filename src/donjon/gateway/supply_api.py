"""`GET /v1/functions/{name}/sbom` and `/provenance` (function:read, as describe).

Query: `version` (default: the version serving), and for the SBOM `format` (json,
the default: the stored CycloneDX JSON, byte for byte; or xml). The provenance is
the DSSE envelope of the version's signed in-toto statement (supply/). A caller that
reaches the function by owning it reads only its own runs of versions (a name removed
and deployed again is a new owner's: gateway/history.py); another version is not
found. Reads of a function are not audited (as `GET /v1/functions/{name}`); refusals are,
and so is a stored record found altered (409, `supply.tampered`): only someone who could
write the database but not sign could have made that change.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.gateway.access import deny
from donjon.gateway.errors import BadRequest, NotFound
from donjon.gateway.guarded import guarded
from donjon.gateway.history import readable, versions_of
from donjon.gateway.node import Node
from donjon.identity import Action, Principal
from donjon.manifest.model import NAME_RE
from donjon.supply import SupplyChain, SupplyNotFound, SupplyTampered

__all__ = ["MEDIA_TYPES", "ROUTES"]

T = TypeVar("T")

_FUNCTION = re.compile(NAME_RE)
_VERSION = re.compile(r"[1-9][0-9]{0,8}")
#: The hint of a version not found (as supply/service.py's).
_NO_VERSION = "`donjon describe NAME` shows its version"
#: The media type of each SBOM format (CycloneDX's registered ones).
MEDIA_TYPES = {"json": "application/vnd.cyclonedx+json", "xml": "application/vnd.cyclonedx+xml"}


async def _target(
    request: Request, node: Node, principal: Principal, request_id: str
) -> tuple[SupplyChain, str, int]:
    """The service, the function's name and the version asked for (default: current)."""
    name = request.path_params["name"]
    if not _FUNCTION.fullmatch(name):  # no function ever had that name
        raise NotFound(f"no function named {name[:64]!r}")
    supply = node.deployments.supply
    if supply is None:
        raise NotFound("this node keeps no SBOMs or provenance")
    raw = request.query_params.get("version")
    if raw is not None:
        if not _VERSION.fullmatch(raw):
            raise BadRequest("version must be a whole number from 1")
        return supply, name, await _readable(request, node, principal, request_id, int(raw))
    deployed = node.registry.get(name)
    if deployed is None:
        raise NotFound(f"no function named {name!r} is deployed", hint="name a version: ?version=N")
    version = await _readable(request, node, principal, request_id, deployed.record.version)
    return supply, name, version


async def _readable(
    request: Request, node: Node, principal: Principal, request_id: str, version: int
) -> int:
    """`version`, if the caller may read it; else refused (audited) as a version that does
    not exist is answered: another owner's versions are not told apart (history.py)."""
    if readable(version, versions_of(request)):
        return version
    name = request.path_params["name"]
    await deny(
        node,
        request,
        principal.label,
        "authz.denied",
        f"{Action.READ.value} on {name} version {version} denied: another owner's version",
        request_id,
    )
    raise NotFound(f"{name} has no version {version}", hint=_NO_VERSION)


async def _read(node: Node, name: str, version: int, request_id: str, read: Callable[[], T]) -> T:
    """`read()` off the loop; a record not kept is a 404, one found altered audited."""
    try:
        return await asyncio.to_thread(read)
    except SupplyNotFound as e:
        raise NotFound(e.message, hint=e.hint) from e
    except SupplyTampered as e:
        await node.audit.record(
            AuditEvent(
                "system",
                "supply.tampered",
                f"{name}@{version}",
                "denied",
                {"request_id": request_id, "reason": e.message[:500]},
            )
        )
        raise


async def function_sbom(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    fmt = request.query_params.get("format", "json")
    if fmt not in MEDIA_TYPES:
        raise BadRequest("format must be json or xml")
    supply, name, version = await _target(request, node, principal, request_id)
    body, digest = await _read(
        node, name, version, request_id, lambda: supply.sbom(name, version, fmt)
    )
    headers = {"x-sbom-digest": f"sha256:{digest}", "x-function-version": str(version)}
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


async def function_provenance(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    supply, name, version = await _target(request, node, principal, request_id)
    envelope = await _read(
        node, name, version, request_id, lambda: supply.provenance(name, version)
    )
    return Response(
        envelope, media_type="application/json", headers={"x-function-version": str(version)}
    )


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/functions/{name}/sbom", "GET", guarded(Action.READ, function_sbom, history=True)),
    (
        "/v1/functions/{name}/provenance",
        "GET",
        guarded(Action.READ, function_provenance, history=True),
    ),
]
