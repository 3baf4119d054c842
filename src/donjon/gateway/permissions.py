"""GET /v1/functions/{name}/permissions/unused: the grants a function has not used."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.audit.unused import DEFAULT_DAYS, check_days, unused_grants
from donjon.gateway.errors import NotFound
from donjon.gateway.node import Node
from donjon.identity import Principal

__all__ = ["unused_permissions"]


async def unused_permissions(request: Request, node: Node, _p: Principal, _r: str) -> Response:
    """The deployed function's secret, egress and invoke grants unused in the last `days`."""
    days = check_days(request.query_params.get("days", str(DEFAULT_DAYS)))
    name = request.path_params["name"]
    deployed = node.registry.get(name)
    if deployed is None:
        raise NotFound(f"no function named {name!r}")
    permissions = deployed.manifest.permissions
    report = await asyncio.to_thread(
        unused_grants,
        node.engine,
        deployed.name,
        deployed.record.version,
        {
            "secrets": permissions.secrets,
            "egress": permissions.egress,
            "invoke": permissions.invoke,
        },
        days,
        None,
        deployed.record.since_version,  # its owner's run: not an earlier function's uses
    )
    return JSONResponse(report.as_json())
