"""GET /v1/runtime: what a bundle's dependencies must be built for.

`donjon deploy` asks before vendoring, so that compiled wheels are those of the
sandbox's interpreter and platform, not the deployer's (bundle/target.py).
Answered to any principal allowed to deploy.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.gateway.node import Node
from donjon.identity import Principal

__all__ = ["runtime_target"]


async def runtime_target(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    target = await node.runtime_target()
    return JSONResponse({"python": target.to_json()})
