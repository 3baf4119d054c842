"""Supply chain records of deployed versions: CycloneDX SBOMs and signed provenance.

Its own package rather than part of bundle/: a provenance statement joins the
bundle with the deploy's principal, the scan verdict and the node's audit key, and
bundle/ is also what the deploying client imports to build bundles.
"""

from __future__ import annotations

from donjon.supply.errors import ProvenanceInvalid, SupplyError, SupplyNotFound, SupplyTampered
from donjon.supply.sbom import ComponentRef, list_components
from donjon.supply.service import DeployInput, SupplyChain
from donjon.supply.verify import VerifiedProvenance, bundle_digest_of, verify_provenance

__all__ = [
    "ComponentRef",
    "DeployInput",
    "ProvenanceInvalid",
    "SupplyChain",
    "SupplyError",
    "SupplyNotFound",
    "SupplyTampered",
    "VerifiedProvenance",
    "bundle_digest_of",
    "list_components",
    "verify_provenance",
]
