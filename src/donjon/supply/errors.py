"""The errors of the supply chain records: SBOMs and provenance statements."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["ProvenanceInvalid", "SupplyError", "SupplyNotFound", "SupplyTampered"]


class SupplyError(Error):
    """An SBOM or a provenance statement could not be made, read or checked."""

    title = "Supply chain record error"


class SupplyNotFound(SupplyError):
    """No such version, or no record of the kind asked for that version."""

    title = "Not found"


class ProvenanceInvalid(SupplyError):
    """A provenance statement failed an offline check: signature, payload type, subject."""

    title = "Provenance check failed"


class SupplyTampered(SupplyError):
    """A stored SBOM or statement is not what the node stored: its row was altered."""

    title = "Supply chain record altered"
