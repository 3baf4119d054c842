"""POST /v1/functions: accept a bundle, gate it, start it, then let it take traffic.

The order is the point: unpack (within limits) and validate, the manifest in
the exact form it will be stored in -> scan -> prestart (the handler imports
in a sandbox) -> one transaction that stores the version (and reads it back
as a node would load it) -> switch. Nothing is stored or switched before the
transaction; any failure after prestart retires the started sandbox; any
refusal or failure is audited and changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.audit import AuditEvent
from donjon.bundle.archive import MAX_BUNDLE_BYTES
from donjon.errors import Error
from donjon.gateway.access import deny, read_body
from donjon.gateway.errors import BadRequest, Forbidden
from donjon.gateway.node import Node
from donjon.gateway.registry import instance_config, make_deployed, stored_manifest
from donjon.identity import Principal, Role
from donjon.manifest import Manifest, ManifestError, load_manifest
from donjon.sandbox import FunctionFailed, SandboxUnavailable
from donjon.scan import ScanError, ScanReport, render_text

__all__ = ["DeployBlocked", "deploy"]

log = logging.getLogger("donjon")


class DeployBlocked(Error):
    """The deploy gate found what the admin's scan policy does not let through."""

    status = 422
    title = "Deploy blocked by the scanner"

    def __init__(self, message: str, report_text: str, problems: list[str]) -> None:
        super().__init__(message, hint="fix the findings, or ask an admin (--unsafe-skip-scan)")
        self.report_text = report_text
        self.problems = problems


@dataclass(frozen=True)
class _Accepted:
    manifest: Manifest
    #: The manifest exactly as it is stored (checked to load back as `manifest`).
    stored: str
    digest: str
    report: ScanReport | None


async def deploy(request: Request, node: Node, principal: Principal, request_id: str) -> Response:
    skip_scan = request.query_params.get("unsafe_skip_scan", "") in ("1", "true")
    if skip_scan and principal.role is not Role.ADMIN:
        await deny(node, request, principal.label, "authz.denied",
                   "unsafe_skip_scan needs the admin role", request_id)
        raise Forbidden("only admins may skip the deploy scan")
    archive = await read_body(request, MAX_BUNDLE_BYTES)
    if not archive:
        raise BadRequest("the request body must be a bundle archive (tar.gz)")
    try:
        accepted, version = await _accept_and_start(node, archive, skip_scan)
    except Error as e:
        await _rejected(node, principal, request_id, e)
        if isinstance(e, FunctionFailed):
            raise ManifestError(e.message, problems=[f"handler: {e.message}"]) from e
        if isinstance(e, SandboxUnavailable):
            log.error("deploy %s: %s", request_id, e.message)  # may name host paths
            raise SandboxUnavailable("the new version's sandbox could not start",
                                     hint=f"the server log has the details (request "
                                          f"{request_id})") from e
        raise
    except Exception as e:  # a defect, never an unaudited one
        await _rejected(node, principal, request_id, e)
        raise
    manifest, digest = accepted.manifest, accepted.digest
    bundle = node.bundles.path(digest)
    try:
        # Checked again now: another deploy may have taken a route while this one started.
        conflicts = node.registry.route_conflicts(manifest)
        if conflicts:
            raise ManifestError("http trigger routes already taken: " + "; ".join(conflicts),
                                problems=conflicts)
        # One transaction; the stored row is loaded inside it as a restarting node
        # would load it, and a failure rolls the whole version back.
        record = node.functions.add_version(manifest.name, version, digest, accepted.stored,
                                            principal.label,
                                            check=lambda stored: make_deployed(stored, bundle))
        deployed = make_deployed(record, bundle)
    except Exception as e:
        if node.pool is not None:
            await node.pool.retire_version(manifest.name, version)
        await _rejected(node, principal, request_id, e)
        raise
    node.registry.put(deployed)
    if node.pool is not None:
        await node.pool.retire(record.name, keep_version=record.version, drain=True)
    await node.audit.record(AuditEvent(principal.label, "function.deploy",
                                       f"{record.name}@{record.version}", "ok",
                                       _audit_detail(request_id, digest, accepted, skip_scan)))
    if skip_scan:
        log.warning("UNSAFE: %s deployed %s@%s without the scan (--unsafe-skip-scan)",
                    principal.label, record.name, record.version)
    body: dict[str, object] = {
        "name": record.name, "version": record.version, "digest": digest,
        "scan": {"skipped": True} if accepted.report is None else {
            "findings": len(accepted.report.findings), "report": render_text(accepted.report)},
        "warnings": _not_yet_granted(manifest),
    }
    return JSONResponse(body, status_code=201)


def _audit_detail(request_id: str, digest: str, accepted: _Accepted,
                  skip_scan: bool) -> dict[str, object]:
    detail: dict[str, object] = {"request_id": request_id, "digest": digest}
    if skip_scan:
        detail["unsafe_skip_scan"] = True
    else:
        detail["findings"] = len(accepted.report.findings) if accepted.report else 0
    return detail


def _not_yet_granted(manifest: Manifest) -> list[str]:
    """Grants this node cannot honour yet: said plainly, never silently ignored."""
    perms = manifest.permissions
    out = []
    if perms.egress:
        out.append("permissions.egress is not enforced by this version: the function has "
                   "no network at all")
    if perms.secrets:
        out.append("permissions.secrets: the vault is not in this version; "
                   "context.secrets is empty")
    if perms.invoke:
        out.append("permissions.invoke: calling other functions is not in this version")
    return out


async def _accept_and_start(node: Node, archive: bytes,
                            skip_scan: bool) -> tuple[_Accepted, int]:
    # On the deploy threads, bounded (gateway/deploy_queue.py), never the shared pool.
    accepted = await node.deploys.run(_accept_bundle, node, archive, skip_scan)
    version = node.functions.next_version(accepted.manifest.name)
    if node.pool is not None:
        # Start the new version before it takes traffic: its import runs
        # (sandboxed) now, so a broken handler fails the deploy, not a caller.
        config = instance_config(accepted.manifest, version, node.bundles.path(accepted.digest))
        await node.pool.prestart(config)
    return accepted, version


async def _rejected(node: Node, principal: Principal, request_id: str,
                    error: Exception) -> None:
    if isinstance(error, Error):
        reason = error.message[:500]
    else:
        log.error("deploy %s failed", request_id, exc_info=error)
        reason = "internal error"
    await node.audit.record(AuditEvent(principal.label, "function.deploy", "-", "rejected",
                                       {"request_id": request_id, "reason": reason,
                                        "error": type(error).__name__}))


def _accept_bundle(node: Node, archive: bytes, skip_scan: bool) -> _Accepted:
    """Unpack, validate manifest and routes, scan, and store the bundle content-addressed."""

    def inspect(tree: Path) -> tuple[Manifest, str, ScanReport | None]:
        # Messages name "the bundle" and its members, never the staging path.
        manifest = load_manifest(tree, label="the bundle")
        stored = stored_manifest(manifest)  # what is validated is what will be stored
        conflicts = node.registry.route_conflicts(manifest)
        if conflicts:
            raise ManifestError("http trigger routes already taken: " + "; ".join(conflicts),
                                problems=conflicts)
        if skip_scan:
            return manifest, stored, None
        # In a limited process of its own (scan/isolated.py); reported as the
        # function's name, not the server's staging path.
        report = dataclasses.replace(_scan(node, tree), root=Path(manifest.name))
        blocking = report.blocking(node.scan_policy)
        if blocking:
            problems = [f"{f.rule_id} {f.location}: {f.message}" for f in blocking]
            raise DeployBlocked(f"{len(blocking)} finding(s) block this deploy",
                                render_text(report), problems)
        return manifest, stored, report

    digest, (manifest, stored, report) = node.bundles.add(archive, inspect)
    return _Accepted(manifest, stored, digest, report)


def _scan(node: Node, tree: Path) -> ScanReport:
    if node.scanner is None:
        raise ScanError("the deploy-time scanner is not running on this node",
                        hint="the node starts it when it starts serving")
    return node.scanner.scan(tree)
