"""A CycloneDX SBOM of one deployed version (cyclonedx-python-lib), and reading one back.

The SBOM's metadata component is the function itself (its name, version and bundle
digest); its components are the distributions vendored in the bundle's `.deps/`
(distributions.py), each with its name, version, purl ``pkg:pypi/NAME@VERSION``,
the SHA-256 of the files the bundle holds for it, and the licences its metadata
names. Everything in it comes from the version's identity and its content-addressed
tree, so the same version always gives the same document (serial number included).

It is stored as the JSON this module makes (CycloneDX 1.6); the stored bytes are
what `sbom_digest` hashes and what the JSON rendering returns, so the digest a
provenance statement carries matches the JSON a client fetches. XML is rendered
from the stored JSON.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from donjon import __version__
from donjon.supply.distributions import Distribution, VendoredSet, read_vendored
from donjon.supply.errors import SupplyError

__all__ = [
    "SCHEMA_VERSION",
    "ComponentRef",
    "FunctionIdentity",
    "build_sbom",
    "component_digests",
    "list_components",
    "render_sbom",
    "sbom_digest",
]

SCHEMA_VERSION = SchemaVersion.V1_6
_FORMATS = {"json": OutputFormat.JSON, "xml": OutputFormat.XML}
#: How a bundle digest is made (bundle/archive.py), said in the SBOM beside it.
_DIGEST_SCHEME = "sha256 of the sorted lines 'path NUL mode NUL sha256(content)' of the bundle"


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


def _purl(dist: Distribution) -> PackageURL:
    return PackageURL("pypi", name=str(canonicalize_name(dist.name)), version=dist.version)


def _component(dist: Distribution, bom_ref: str) -> Component:
    factory = LicenseFactory()
    return Component(
        name=dist.name,
        version=dist.version,
        type=ComponentType.LIBRARY,
        bom_ref=bom_ref,
        purl=_purl(dist),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dist.sha256)],
        licenses=[factory.make_from_string(text) for text in dist.licenses],
        properties=[
            Property(name="donjon:files", value=str(dist.files)),
            Property(name="donjon:record:altered", value=str(dist.altered)),
            Property(name="donjon:record:missing", value=str(dist.missing)),
        ],
    )


def _bom(function: FunctionIdentity, vendored: VendoredSet) -> Bom:
    root = Component(
        name=function.name,
        version=str(function.version),
        type=ComponentType.APPLICATION,
        bom_ref=f"function:{function.name}@{function.version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=function.digest)],
        properties=[
            Property(name="donjon:bundle-digest", value=f"sha256:{function.digest}"),
            Property(name="donjon:bundle-digest-scheme", value=_DIGEST_SCHEME),
            Property(name="donjon:deps:unattributed-files", value=str(vendored.unattributed)),
        ],
    )
    serial = uuid.uuid5(
        uuid.NAMESPACE_URL, f"donjon:sbom:{function.name}@{function.version}:{function.digest}"
    )
    bom = Bom(serial_number=serial)
    bom.metadata.component = root
    bom.metadata.timestamp = datetime.datetime.fromtimestamp(
        round(function.deployed_at), datetime.UTC
    )
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="donjon", version=__version__)
    )
    seen: dict[str, int] = {}
    components = []
    for dist in vendored.distributions:
        ref = _purl(dist).to_string()
        seen[ref] = seen.get(ref, 0) + 1
        if seen[ref] > 1:  # two copies of one release: each keeps a reference of its own
            ref = f"{ref}#{seen[ref]}"
        components.append(_component(dist, ref))
    bom.components.update(components)
    bom.register_dependency(root, components)
    return bom


def build_sbom(tree: Path, function: FunctionIdentity) -> str:
    """The SBOM (CycloneDX JSON) of the bundle tree `tree` deployed as `function`."""
    bom = _bom(function, read_vendored(tree))
    return make_outputter(bom, OutputFormat.JSON, SCHEMA_VERSION).output_as_string()


def sbom_digest(document: str) -> str:
    """The hex SHA-256 of a stored SBOM's bytes (UTF-8)."""
    return hashlib.sha256(document.encode()).hexdigest()


def render_sbom(document: str, fmt: str) -> str:
    """A stored SBOM as `fmt` (json: the stored bytes as they are; xml)."""
    if fmt not in _FORMATS:
        raise SupplyError(f"unknown SBOM format {fmt!r}", hint="use json or xml")
    if fmt == "json":
        return document
    try:
        bom = Bom.from_json(json.loads(document))  # type: ignore[attr-defined]  # added by a decorator
    except (ValueError, TypeError, KeyError) as e:
        raise SupplyError(
            f"the stored SBOM cannot be read ({type(e).__name__})",
            hint="the database row was altered; it is made again from the bundle if removed",
        ) from e
    return str(make_outputter(bom, OutputFormat.XML, SCHEMA_VERSION).output_as_string())


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
