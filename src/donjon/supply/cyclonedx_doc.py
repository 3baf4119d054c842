"""The CycloneDX document of one deployed version, made and rendered with
cyclonedx-python-lib (sbom.py says what it holds and how it is stored).

Its own module so that the library (about 0.13 s and 8 MiB to import) is loaded by
the first deploy or XML rendering, not by every node's start: sbom.py imports it
where it is used; reading a stored SBOM back needs only JSON.
"""

from __future__ import annotations

import datetime
import json
import uuid

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from donjon import __version__
from donjon.supply.distributions import Distribution, VendoredSet
from donjon.supply.errors import SupplyError
from donjon.supply.sbom import FunctionIdentity

__all__ = ["SCHEMA_VERSION", "bom_json", "json_as_xml"]

SCHEMA_VERSION = SchemaVersion.V1_6
#: How a bundle digest is made (bundle/archive.py), said in the SBOM beside it.
_DIGEST_SCHEME = "sha256 of the sorted lines 'path NUL mode NUL sha256(content)' of the bundle"


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
            Property(name="donjon:location", value=dist.location),
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


def bom_json(function: FunctionIdentity, vendored: VendoredSet) -> str:
    """The SBOM (CycloneDX JSON) of `vendored` deployed as `function`."""
    return make_outputter(
        _bom(function, vendored), OutputFormat.JSON, SCHEMA_VERSION
    ).output_as_string()


def json_as_xml(document: str) -> str:
    """A stored SBOM (CycloneDX JSON) rendered as CycloneDX XML."""
    try:
        bom = Bom.from_json(json.loads(document))  # type: ignore[attr-defined]  # added by a decorator
    except (ValueError, TypeError, KeyError) as e:
        raise SupplyError(
            f"the stored SBOM cannot be read ({type(e).__name__})",
            hint="the database row was altered; it is made again from the bundle if removed",
        ) from e
    return str(make_outputter(bom, OutputFormat.XML, SCHEMA_VERSION).output_as_string())
