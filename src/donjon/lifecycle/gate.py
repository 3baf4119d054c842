"""The deploy gate: what a bundle must pass before anything of it is stored or started.

Blocking work, run on the deploy threads (deploy_queue.py): unpack (within
limits) and validate the manifest in the exact form it will be stored in,
check its routes, scan it, and keep the tree content-addressed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from donjon.bundle import BundleStore
from donjon.bundle.target import RuntimeTarget
from donjon.bundle.wheels import check_vendored
from donjon.egress.addresses import IPNetwork
from donjon.lifecycle.errors import DeployBlocked
from donjon.lifecycle.registry import FunctionRegistry, Shown, stored_manifest
from donjon.manifest import Manifest, ManifestError, load_manifest
from donjon.manifest.exposure import public_triggers
from donjon.manifest.grants import broad_grants, egress_refusals
from donjon.scan import ScanError, ScanPolicy, ScanReport, render_text

__all__ = ["BROAD_GRANT_RULE", "Accepted", "BundleScanner", "accept_bundle", "route_conflicts"]

#: The scanner's finding for what `broad_grants` refuses (both call `broad_reason`).
BROAD_GRANT_RULE = "DJ-MF-002"
#: The scanner's findings for what `public_triggers` refuses: a public http trigger
#: without a rate, a webhook (or s3 push) without a secret.
PUBLIC_TRIGGER_RULES = frozenset({"DJ-MF-001", "DJ-MF-005"})


class BundleScanner(Protocol):
    """The deploy-time scan (the node's runs in a limited process of its own)."""

    def scan(self, tree: Path) -> ScanReport: ...


@dataclass(frozen=True)
class Accepted:
    """A bundle that passed the gate and is kept under its digest."""

    manifest: Manifest
    #: The manifest exactly as it is stored (checked to load back as `manifest`).
    stored: str
    digest: str
    #: None when the scan was skipped (--unsafe-skip-scan).
    report: ScanReport | None
    #: SHA-256 (hex) of the archive as received (the provenance's source digest).
    source_digest: str = ""


def route_conflicts(
    registry: FunctionRegistry, manifest: Manifest, shown: Shown | None = None
) -> None:
    """`ManifestError` if another function already serves one of `manifest`'s routes, or
    a secret of one of its paths under /hooks authenticates another path too; naming
    only the functions `shown` allows (None: every one)."""
    conflicts = registry.route_conflicts(manifest, shown)
    if conflicts:
        raise ManifestError(
            "trigger routes already taken: " + "; ".join(conflicts),
            problems=conflicts,
            hint="give each function http paths of its own, none at or below another "
            "function's: a browser sends a path's cookies to every path below it",
        )
    shared = registry.shared_hook_secrets(manifest, shown)
    if shared:
        raise ManifestError(
            "hook secrets shared between paths: " + "; ".join(shared),
            problems=shared,
            hint="give each webhook and storage push path a secret of its own: a signature "
            "covers the body, not the URL, so a delivery for one path passes at the other",
        )


def accept_bundle(
    archive: bytes,
    *,
    bundles: BundleStore,
    registry: FunctionRegistry,
    scanner: BundleScanner | None,
    policy: ScanPolicy,
    skip_scan: bool,
    allow_broad: bool = False,
    allow_public: bool = False,
    runtime: RuntimeTarget | None = None,
    egress_networks: Sequence[IPNetwork] = (),
    shown: Shown | None = None,
) -> Accepted:
    """Unpack, validate manifest and routes, scan, and store the bundle content-addressed.

    `runtime`: the sandbox's interpreter and platform; its vendored wheels must fit it.
    `egress_networks`: the node's DONJON_EGRESS_ALLOW_NETWORKS; an egress grant its
    proxy would refuse fails the deploy, whoever asks.
    `allow_public`: an admin's --unsafe-allow-public lets through triggers that accept
    unauthenticated events (manifest/exposure.py); refused otherwise.
    `shown`: the functions a refusal may name (the deployer's readable ones; None: all).
    """

    def inspect(tree: Path) -> tuple[Manifest, str, ScanReport | None]:
        # Messages name "the bundle" and its members, never the staging path.
        manifest = load_manifest(tree, label="the bundle")
        stored = stored_manifest(manifest)  # what is validated is what will be stored
        route_conflicts(registry, manifest, shown)
        if runtime is not None:
            check_vendored(tree, runtime)  # wheels built for another Python fail every import
        refused = egress_refusals(manifest.permissions, egress_networks)
        if refused:  # never honoured by the proxy: no escape hatch makes it work
            raise ManifestError(
                "egress grants the egress proxy refuses: " + "; ".join(refused),
                problems=refused,
                hint="grant public host:port pairs; an internal network must first be listed "
                "in the node's DONJON_EGRESS_ALLOW_NETWORKS by its admin",
            )
        broad = broad_grants(manifest.permissions)
        if broad and not allow_broad:
            raise ManifestError(
                "over-broad permission grants: " + "; ".join(broad),
                problems=broad,
                hint="grant exact names and host:port pairs (an admin may --unsafe-allow-broad)",
            )
        public = public_triggers(manifest)
        if public and not allow_public:
            raise ManifestError(
                "triggers that would accept unauthenticated events: " + "; ".join(public),
                problems=public,
                hint="give each webhook (and s3 push trigger) a vault secret, and a public "
                "http trigger a limits.rate (an admin may --unsafe-allow-public)",
            )
        if skip_scan:
            return manifest, stored, None
        if scanner is None:
            raise ScanError(
                "the deploy-time scanner is not running on this node",
                hint="the node starts it when it starts serving",
            )
        # Reported as the function's name, not the server's staging path.
        report = dataclasses.replace(scanner.scan(tree), root=Path(manifest.name))
        blocking = [
            f
            for f in report.blocking(policy)
            # Broad grants and public triggers were decided above (allowed here by an
            # admin): one decision, not two.
            if not (allow_broad and f.rule_id == BROAD_GRANT_RULE)
            and not (allow_public and f.rule_id in PUBLIC_TRIGGER_RULES)
        ]
        if blocking:
            problems = [f"{f.rule_id} {f.location}: {f.message}" for f in blocking]
            raise DeployBlocked(
                f"{len(blocking)} finding(s) block this deploy", render_text(report), problems
            )
        return manifest, stored, report

    digest, (manifest, stored, report) = bundles.add(archive, inspect)
    return Accepted(manifest, stored, digest, report, hashlib.sha256(archive).hexdigest())
