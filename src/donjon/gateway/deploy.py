"""POST /v1/functions: read the bundle, call `Deployments.deploy`, render what it did.

What a deploy does (the gate, the scan, prestart, the transaction, the switch,
the audit records) lives in `donjon.lifecycle`; this handler only parses the
request and renders the result. Its errors reach the client through
guarded.py's `guarded`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from donjon.bundle.archive import MAX_BUNDLE_BYTES
from donjon.gateway.access import deny, read_body
from donjon.gateway.errors import BadRequest, Forbidden, PayloadTooLarge
from donjon.gateway.node import Node
from donjon.gateway.schemas import query_flag, render
from donjon.gateway.views import DeployResult
from donjon.identity import Principal, Role
from donjon.lifecycle import DeployBusy
from donjon.scan import render_text

__all__ = ["deploy"]


#: Each escape hatch of a deploy (a query flag, admins only), and what a non-admin is told.
_HATCHES = {
    "unsafe_skip_scan": "only admins may skip the deploy scan",
    "unsafe_allow_broad": "only admins may deploy broad permission grants",
    "unsafe_allow_public": "only admins may deploy triggers open to unauthenticated events",
}


async def _hatch(
    request: Request, node: Node, principal: Principal, request_id: str, name: str
) -> bool:
    """Whether the deploy asks for the escape hatch `name`; `Forbidden` (audited) if it
    does and the caller is not an admin."""
    asked = query_flag(request, name)
    if asked and principal.role != Role.ADMIN:
        await deny(
            node,
            request,
            principal.label,
            "authz.denied",
            f"{name} needs the admin role",
            request_id,
        )
        raise Forbidden(_HATCHES[name])
    return asked


async def deploy(request: Request, node: Node, principal: Principal, request_id: str) -> Response:
    skip_scan = await _hatch(request, node, principal, request_id, "unsafe_skip_scan")
    allow_broad = await _hatch(request, node, principal, request_id, "unsafe_allow_broad")
    allow_public = await _hatch(request, node, principal, request_id, "unsafe_allow_public")
    # A place in the deploy queue before the archive (up to 256 MiB) is read into memory.
    try:
        with node.deployments.queue.receiving(principal.label):
            archive = await read_body(request, MAX_BUNDLE_BYTES)
        if not archive:
            raise BadRequest("the request body must be a bundle archive (tar.gz)")
    except (DeployBusy, BadRequest, PayloadTooLarge) as e:
        # Refused before the deploy began: audited as every refused deploy is.
        await deny(node, request, principal.label, "function.deploy", e.message, request_id)
        raise
    done = await node.deployments.deploy(
        archive,
        principal,
        request_id,
        skip_scan=skip_scan,
        allow_broad=allow_broad,
        allow_public=allow_public,
    )
    record, report = done.record, done.report
    body: dict[str, object] = {
        "name": record.name,
        "version": record.version,
        "digest": done.digest,
        "scan": {"skipped": True}
        if report is None
        else {"findings": len(report.findings), "report": render_text(report)},
        "warnings": list(done.warnings),
        "unchanged": done.unchanged,
    }
    if done.unchanged:
        # Same bundle digest as the version serving: a no-op, said so (200, not 201).
        body["message"] = (
            f"{record.name} version {record.version} already runs this bundle "
            f"(sha256:{done.digest}); nothing deployed"
        )
        return render(DeployResult.model_validate(body), 200)
    return render(DeployResult.model_validate(body), 201)
