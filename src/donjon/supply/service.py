"""`SupplyChain`: each deployed version's SBOM and signed provenance, made and read.

At deploy (lifecycle/deployments.py), once the gate has accepted a bundle and its
version is picked, `attest` makes the SBOM of the stored tree and the provenance
statement, signs it with the node's audit key, and returns the row the deploy's
transaction stores with the version. Reads (`sbom`, `provenance`, `components`)
come from that row; a version deployed before this existed has its SBOM made from
its content-addressed bundle on first request and stored, and no provenance: the
node did not record that deploy's scan verdict or source digest, and a statement
made now would attest what it never saw.

Every method does blocking work (files, the database): call it on a thread.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from donjon.audit import SigningKey
from donjon.bundle import BundleStore
from donjon.manifest import Manifest
from donjon.manifest.exposure import public_triggers
from donjon.manifest.grants import broad_grants
from donjon.scan import ScanPolicy, ScanReport
from donjon.scan.deps.advisory_cache import source_digest
from donjon.store.supply import SupplyRecord, SupplyStore
from donjon.supply.errors import SupplyError, SupplyNotFound, SupplyTampered
from donjon.supply.provenance import DeployFacts, ScanVerdict, make_statement, statement_digest
from donjon.supply.sbom import (
    ComponentRef,
    FunctionIdentity,
    build_sbom,
    component_digests,
    list_components,
    render_sbom,
    sbom_digest,
)
from donjon.supply.verify import verify_provenance

__all__ = ["DeployInput", "SupplyChain"]

log = logging.getLogger("donjon")

#: OSV records over this size are skipped by the advisory loader, and so by its digest.
_MAX_ADVISORY_RECORD = 8 * 1024 * 1024


@dataclass(frozen=True)
class DeployInput:
    """What a deploy knows that its provenance states."""

    manifest: Manifest
    version: int
    digest: str
    #: SHA-256 of the archive as received.
    source_digest: str
    report: ScanReport | None
    principal: str
    request_id: str
    skip_scan: bool


class SupplyChain:
    """Makes, stores and reads the SBOM and provenance of each deployed version."""

    def __init__(
        self,
        store: SupplyStore,
        bundles: BundleStore,
        key: SigningKey,
        policy: ScanPolicy,
        *,
        advisories: Path | None = None,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._bundles = bundles
        self._key = key
        self._policy = policy
        self._advisories = advisories
        self._advisories_digest: str | None = None
        self._digest_lock = threading.Lock()
        self._host = host if host is not None else socket.gethostname()
        self._clock = clock

    def _advisory_digest(self) -> str | None:
        """The advisory source's digest (as the scanner's cache keys it), read once."""
        if self._advisories is None:
            return None
        with self._digest_lock:
            if self._advisories_digest is None:
                try:
                    self._advisories_digest = source_digest(self._advisories, _MAX_ADVISORY_RECORD)
                except OSError as e:
                    log.warning("cannot digest the advisory database: %s", e)
                    return None
            return self._advisories_digest

    def _verdict(self, report: ScanReport | None) -> ScanVerdict:
        if report is None:
            counts: dict[str, int] = {}
            blocking = records = 0
        else:
            counts = {s.label: n for s, n in report.counts().items()}
            blocking = len(report.blocking(self._policy))
            records = report.advisories_loaded
        return ScanVerdict(
            skipped=report is None,
            counts=counts,
            blocking=blocking,
            min_severity=self._policy.min_severity.label,
            min_confidence=self._policy.min_confidence.label,
            advisories_source=None if self._advisories is None else self._advisories.name,
            advisories_digest=self._advisory_digest(),
            advisories_records=records,
        )

    def attest(self, deploy: DeployInput) -> SupplyRecord:
        """The SBOM and signed provenance of a version about to be stored (not stored
        here: the deploy's transaction writes the row, with the version)."""
        now = self._clock()
        name = deploy.manifest.name
        identity = FunctionIdentity(name, deploy.version, deploy.digest, now)
        sbom = build_sbom(self._bundles.path(deploy.digest), identity)
        hatches = ["unsafe_skip_scan"] if deploy.skip_scan else []
        if broad_grants(deploy.manifest.permissions):
            hatches.append("unsafe_allow_broad")
        if public_triggers(deploy.manifest):
            hatches.append("unsafe_allow_public")
        facts = DeployFacts(
            name=name,
            version=deploy.version,
            bundle_digest=deploy.digest,
            source_digest=deploy.source_digest,
            principal=deploy.principal,
            request_id=deploy.request_id,
            at=now,
            node_origin=self._key.origin,
            node_host=self._host,
            hatches=tuple(hatches),
            scan=self._verdict(deploy.report),
            sbom_digest=sbom_digest(sbom),
            components=component_digests(sbom),
        )
        payload = make_statement(facts)
        # securesystemslib (0.1-0.3 s to import) is loaded by the first deploy, not at start.
        from donjon.supply.dsse import sign_envelope

        envelope = json.dumps(sign_envelope(payload, self._key), sort_keys=True)
        return SupplyRecord(
            name, deploy.version, sbom, sbom_digest(sbom), envelope, statement_digest(payload), now
        )

    def record(self, name: str, version: int) -> SupplyRecord:
        """The stored SBOM and provenance of `name` version `version`; the SBOM of a
        version deployed before they were kept is made from its bundle and stored now.

        `SupplyNotFound` if no such version was ever deployed.
        """
        found = self._store.get(name, version)
        if found is not None:
            return self._vouched(found)
        row = self._store.version(name, version)
        if row is None:
            raise SupplyNotFound(
                f"{name} has no version {version}", hint="`donjon describe NAME` shows its version"
            )
        bundle = self._bundles.path(row.digest)
        if not bundle.is_dir():
            raise SupplyNotFound(
                f"the bundle of {name} version {version} is no longer on this node",
                hint="its SBOM can only be made from its bundle",
            )
        sbom = build_sbom(bundle, FunctionIdentity(name, version, row.digest, row.created_at))
        made = SupplyRecord(name, version, sbom, sbom_digest(sbom), None, None, self._clock())
        log.info("made the SBOM of %s@%s (deployed before SBOMs were kept)", name, version)
        return self._store.add_missing(made)

    def _vouched(self, found: SupplyRecord) -> SupplyRecord:
        """`found`, if it is what this node stored: the SBOM's bytes are the digest its row
        gives and, when it has provenance, the one its statement names, and the statement
        verifies by the node's key and is of this version and its bundle.

        `SupplyTampered` if not: someone who could write the database, but not sign, changed
        the row, and nothing of it is served (or checked by the watch) as the node's word.
        """
        digest = sbom_digest(found.sbom)
        problem = None if digest == found.sbom_digest else "its SBOM is not the one stored"
        if problem is None and found.provenance is not None:
            problem = self._statement_problem(found, digest)
        if problem is None:
            return found
        log.warning("supply records of %s@%s altered: %s", found.name, found.version, problem)
        raise SupplyTampered(
            f"the stored SBOM and provenance of {found.name} version {found.version} were "
            f"altered: {problem}",
            hint="restore the database row from a backup, or deploy the function again",
        )

    def _statement_problem(self, found: SupplyRecord, digest: str) -> str | None:
        """What is wrong with `found`'s statement as a vouch for its SBOM (None: nothing)."""
        try:
            checked = verify_provenance((found.provenance or "").encode(), self._key.verifier)
        except SupplyError as e:
            return f"its provenance does not verify ({e.message})"
        row = self._store.version(found.name, found.version)
        if (
            checked.subject != f"function:{found.name}@{found.version}"
            or row is None
            or checked.bundle_digest != row.digest
            or checked.statement_digest != found.statement_digest
        ):
            return "its provenance is not this version's"
        run = checked.statement.get("predicate", {}).get("runDetails", {})
        named = [b.get("digest", {}).get("sha256") for b in run.get("byproducts", [])]
        return None if named == [digest] else "its SBOM is not the one its provenance names"

    def sbom(self, name: str, version: int, fmt: str = "json") -> tuple[str, str]:
        """The version's SBOM rendered as `fmt` (json: the stored bytes; xml), and the
        stored JSON's digest."""
        record = self.record(name, version)
        return render_sbom(record.sbom, fmt), record.sbom_digest

    def provenance(self, name: str, version: int) -> str:
        """The DSSE envelope (JSON) of the version's provenance statement."""
        record = self.record(name, version)
        if record.provenance is None:
            raise SupplyNotFound(
                f"{name} version {version} has no provenance statement: it was deployed "
                "before this node kept them",
                hint="deploy it again (a new version) to get a signed statement",
            )
        return record.provenance

    def components(self, name: str, version: int) -> list[ComponentRef] | None:
        """The components (name, version, purl) of the version's stored SBOM, when its
        signed statement vouches for it; None when it has none (deployed before statements
        were kept, or its row stripped of it): then only the bundle itself can say."""
        record = self.record(name, version)
        return None if record.provenance is None else list_components(record.sbom)
