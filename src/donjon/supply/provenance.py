"""The provenance of a deployed version: an in-toto Statement v1 whose predicate is SLSA
provenance v1, in the closest honest shape for a deploy.

- subject: the bundle, named ``function:NAME@VERSION``, by its content digest.
- buildDefinition.externalParameters: what the deployer sent (the function's name,
  the SHA-256 of the archive as received, the escape hatches asked for).
- buildDefinition.internalParameters: what the node decided (who deployed, the scan
  verdict: counts by severity, what would have blocked and why it did not, the gate's
  policy, the scanner and advisory database it used).
- buildDefinition.resolvedDependencies: each vendored distribution, by purl and the
  digest the SBOM gives it.
- runDetails: the node (builder.id from its audit key's origin; its host name is
  an internal parameter), the deploy's request id and time, and the SBOM as a
  byproduct with its digest.

Nothing is built at deploy (the bundle arrives built), so "build" here is the
node's acceptance of a bundle: the statement says who sent what, what the gate
found, and what was stored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from donjon import __version__
from donjon.supply.sbom import ComponentRef

__all__ = [
    "BUILD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "DeployFacts",
    "ScanVerdict",
    "make_statement",
    "statement_digest",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
#: What a deploy by a Donjon node is, as a SLSA build type (docs/scanning.md describes it).
BUILD_TYPE = "urn:donjon:deploy:v1"
SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"


@dataclass(frozen=True)
class ScanVerdict:
    """What the deploy gate's scan said of the bundle."""

    skipped: bool
    #: Findings per severity label (critical, high, medium, low); empty when skipped.
    counts: dict[str, int]
    #: Findings at or over the gate's policy: let through only by an admin's escape hatch.
    blocking: int
    min_severity: str
    min_confidence: str
    advisories_source: str | None
    advisories_digest: str | None
    advisories_records: int

    def as_json(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "counts": self.counts,
            "blocking": self.blocking,
            "policy": {"minSeverity": self.min_severity, "minConfidence": self.min_confidence},
            "scanner": {"name": "donjon-scan", "version": __version__},
            "advisoryDatabase": {
                "source": self.advisories_source,
                "sha256": self.advisories_digest,
                "records": self.advisories_records,
            },
        }


@dataclass(frozen=True)
class DeployFacts:
    """Everything a provenance statement says of one deploy."""

    name: str
    version: int
    bundle_digest: str
    source_digest: str
    principal: str
    request_id: str
    at: float
    #: The node: its audit key's origin (donjon.audit/...) and its host name.
    node_origin: str
    node_host: str
    #: --unsafe-* flags the deploy used (skip_scan, allow_broad, allow_public).
    hatches: tuple[str, ...]
    scan: ScanVerdict
    sbom_digest: str
    components: Sequence[tuple[ComponentRef, str]]


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


def make_statement(facts: DeployFacts) -> bytes:
    """The statement's canonical bytes (sorted keys, no spaces): what the envelope signs."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"function:{facts.name}@{facts.version}",
                "digest": {"sha256": facts.bundle_digest},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "function": facts.name,
                    # The archive as received (tar, optionally gz, bz2 or xz).
                    "source": {"digest": {"sha256": facts.source_digest}},
                    "unsafe": list(facts.hatches),
                },
                "internalParameters": {
                    "deployedBy": facts.principal,
                    "node": {"origin": facts.node_origin, "host": facts.node_host},
                    "version": facts.version,
                    "scan": facts.scan.as_json(),
                },
                "resolvedDependencies": [
                    {"uri": ref.purl, "name": ref.name, "digest": {"sha256": digest}}
                    for ref, digest in facts.components
                ],
            },
            "runDetails": {
                "builder": {
                    "id": f"urn:donjon:node:{facts.node_origin}",
                    "version": {"donjon": __version__},
                },
                "metadata": {
                    "invocationId": facts.request_id,
                    "finishedOn": _iso(facts.at),
                },
                "byproducts": [
                    {
                        "name": "sbom",
                        "mediaType": SBOM_MEDIA_TYPE,
                        "digest": {"sha256": facts.sbom_digest},
                    }
                ],
            },
        },
    }
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def statement_digest(payload: bytes) -> str:
    """The hex SHA-256 of a statement's bytes (what the audit record names)."""
    return hashlib.sha256(payload).hexdigest()
