"""Checking a provenance statement offline: `donjon verify-provenance`.

Needs nothing of the node: the DSSE envelope (`donjon provenance NAME@VERSION`
prints it), the node's public key (`donjon audit pubkey`, or DATA_DIR/audit-signing.pub)
and, optionally, the bundle (its archive, or an unpacked tree) whose digest must be
the statement's subject.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.audit import VerifierKey
from donjon.bundle import tree_digest, unpack
from donjon.bundle.archive import MAX_BUNDLE_BYTES
from donjon.supply.errors import ProvenanceInvalid
from donjon.supply.provenance import PREDICATE_TYPE, STATEMENT_TYPE, statement_digest

__all__ = ["VerifiedProvenance", "bundle_digest_of", "verify_provenance"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifiedProvenance:
    """A statement whose signature checked, with what it says."""

    subject: str
    bundle_digest: str
    statement_digest: str
    statement: dict[str, Any]
    #: True when a bundle was given and its digest is the subject's.
    bundle_checked: bool


def bundle_digest_of(path: Path) -> str:
    """The content digest of a bundle: an unpacked tree, or an archive unpacked (within
    the node's limits) into a temporary directory first."""
    if path.is_dir():
        return tree_digest(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_BUNDLE_BYTES else b""
    except OSError as e:
        raise ProvenanceInvalid(f"cannot read the bundle {path}: {e.strerror}") from e
    if not data:
        raise ProvenanceInvalid(f"{path} is empty or larger than a bundle may be")
    with tempfile.TemporaryDirectory(prefix="donjon-verify-") as tmp:
        unpack(data, Path(tmp))
        return tree_digest(Path(tmp))


def _subject(statement: Any) -> tuple[str, str]:
    """The statement's one subject: its name and sha256 digest."""
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise ProvenanceInvalid(f"the payload is not an in-toto Statement ({STATEMENT_TYPE})")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise ProvenanceInvalid(
            f"the statement's predicate is not SLSA provenance ({PREDICATE_TYPE})"
        )
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise ProvenanceInvalid("the statement must name exactly one subject (the bundle)")
    digest = subjects[0].get("digest")
    sha = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ProvenanceInvalid("the statement's subject has no sha256 digest")
    return str(subjects[0].get("name", "")), sha


def verify_provenance(
    document: bytes, key: VerifierKey, bundle: Path | None = None
) -> VerifiedProvenance:
    """Check the envelope's signature by `key`, its payload type and statement shape,
    and (with `bundle`) that the bundle is the statement's subject.

    `ProvenanceInvalid` (a `BundleError` for an archive that cannot be unpacked) names
    the first thing that failed.
    """
    from donjon.supply.dsse import open_envelope  # securesystemslib: loaded when used

    payload = open_envelope(document, key)
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ProvenanceInvalid("the signed payload is not JSON") from None
    name, digest = _subject(statement)
    if bundle is not None:
        found = bundle_digest_of(bundle)
        if found != digest:
            raise ProvenanceInvalid(
                f"the bundle's digest sha256:{found} is not the statement's subject "
                f"{name} sha256:{digest}",
                hint="pass the bundle that was deployed (its archive or unpacked tree)",
            )
    return VerifiedProvenance(
        name, digest, statement_digest(payload), statement, bundle is not None
    )
