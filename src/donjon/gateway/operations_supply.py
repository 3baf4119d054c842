"""The OpenAPI catalog of each version's SBOM and provenance (gateway/supply_api.py):
merged into OPERATIONS (operations.py)."""

from __future__ import annotations

from donjon.gateway.operation_model import AUTH, Operation, Param, Raw

__all__ = ["SUPPLY_OPERATIONS"]

_VERSION = Param(
    "version",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    "the version (default: the one serving). Through a role's `*`, only a version the "
    "caller owned: another owner's is answered as a version that does not exist (audited)",
)
_SBOM = Raw(
    {
        "application/vnd.cyclonedx+json": {"schema": {"type": "object"}},
        "application/vnd.cyclonedx+xml": {"schema": {"type": "string"}},
    },
    "the CycloneDX 1.6 SBOM of the version: the function and its vendored distributions",
)
_ENVELOPE = Raw(
    {"application/json": {"schema": {"type": "object"}}},
    "a DSSE envelope: an in-toto Statement v1 (SLSA provenance v1) signed by the node",
)

SUPPLY_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/functions/{name}/sbom"): Operation(
        "functionSbom",
        "A deployed version's SBOM (CycloneDX)",
        "functions",
        {200: _SBOM},
        (400, *AUTH, 404, 409),
        params=(
            _VERSION,
            Param(
                "format",
                "query",
                {"type": "string", "enum": ["json", "xml"], "default": "json"},
                "json (the stored document, whose SHA-256 the provenance names) or xml",
            ),
        ),
        description="Made at deploy and stored with the version; a version deployed before "
        "SBOMs were kept gets one made from its bundle on first request. Components: each "
        "distribution of the bundle's .deps/ with its purl, SHA-256 and licences. A stored "
        "document its signed provenance does not vouch for is refused (409).",
        headers={
            "x-sbom-digest": "sha256 of the stored JSON document",
            "x-function-version": "the version described",
        },
    ),
    ("GET", "/v1/functions/{name}/provenance"): Operation(
        "functionProvenance",
        "A deployed version's signed provenance statement",
        "functions",
        {200: _ENVELOPE},
        (400, *AUTH, 404, 409),
        params=(_VERSION,),
        description="Signed with the node's audit key: check it offline with `donjon "
        "verify-provenance FILE --key PUBKEY` (the key `donjon audit pubkey` prints). A "
        "version deployed before provenance was kept has none (404); a stored statement "
        "that is not this version's, or does not verify, is refused (409).",
        headers={"x-function-version": "the version described"},
    ),
}
