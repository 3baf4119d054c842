"""A CycloneDX SBOM of one deployed version (cyclonedx-python-lib), and reading one back.

The SBOM's metadata component is the function itself (its name, version and bundle
digest); its components are the distributions vendored in the bundle's `.deps/` and
those installed at its root (distributions.py), each with its name, version, purl
``pkg:pypi/NAME@VERSION``, the SHA-256 of the files the bundle holds for it, and the
licences its metadata names. Everything in it comes from the version's identity and
its content-addressed tree, so the same version always gives the same document (serial
number included).

It is stored as the JSON this module makes (CycloneDX 1.6); the stored bytes are
what `sbom_digest` hashes and what the JSON rendering returns, so the digest a
provenance statement carries matches the JSON a client fetches. XML is rendered
from the stored JSON. The library's part is cyclonedx_doc.py, imported where it is
used: reading a stored SBOM back (what a node does at start) needs only JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.supply.distributions import read_vendored
from donjon.supply.errors import SupplyError

__all__ = [
    "ComponentRef",
    "FunctionIdentity",
    "build_sbom",
    "component_digests",
    "list_components",
    "render_sbom",
    "sbom_digest",
]

#: The renderings of a stored SBOM.
FORMATS = ("json", "xml")


@dataclass(frozen=True)
class FunctionIdentity:
    """What names one deployed version."""

    name: str
    version: int
    #: The bundle's content digest (hex SHA-256, bundle/archive.py).
    digest: str
    #: When the version was deployed (seconds since the epoch).
    deployed_at: float


@dataclass(frozen=True)
class ComponentRef:
    """One component of a stored SBOM, as a re-check against advisories needs it."""

    name: str
    version: str
    purl: str


def build_sbom(tree: Path, function: FunctionIdentity) -> str:
    """The SBOM (CycloneDX JSON) of the bundle tree `tree` deployed as `function`."""
    from donjon.supply.cyclonedx_doc import bom_json

    return bom_json(function, read_vendored(tree))


def sbom_digest(document: str) -> str:
    """The hex SHA-256 of a stored SBOM's bytes (UTF-8)."""
    return hashlib.sha256(document.encode()).hexdigest()


def render_sbom(document: str, fmt: str) -> str:
    """A stored SBOM as `fmt` (json: the stored bytes as they are; xml)."""
    if fmt not in FORMATS:
        raise SupplyError(f"unknown SBOM format {fmt!r}", hint="use json or xml")
    if fmt == "json":
        return document
    from donjon.supply.cyclonedx_doc import json_as_xml

    return json_as_xml(document)


def _sha256(component: dict[str, Any]) -> str:
    for entry in component.get("hashes", []):
        if entry.get("alg") == "SHA-256":
            return str(entry["content"])
    return ""


def list_components(document: str) -> list[ComponentRef]:
    """The components (name, version, purl) a stored SBOM lists, in its order."""
    return [ref for ref, _ in component_digests(document)]


def component_digests(document: str) -> list[tuple[ComponentRef, str]]:
    """Each component of a stored SBOM with its SHA-256 (hex; "" when it has none)."""
    try:
        data: Any = json.loads(document)
        found = data.get("components", []) if isinstance(data, dict) else None
        if not isinstance(found, list):
            raise TypeError("components is not a list")
        return [
            (
                ComponentRef(str(c["name"]), str(c.get("version", "")), str(c.get("purl", ""))),
                _sha256(c),
            )
            for c in found
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise SupplyError(
            f"the stored SBOM cannot be read ({type(e).__name__})",
            hint="the database row was altered; it is made again from the bundle if removed",
        ) from e
