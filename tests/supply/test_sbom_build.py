"""The SBOM of a bundle: its vendored distributions with purls, hashes of the bytes the
bundle holds and licences, valid CycloneDX 1.6 in JSON and XML."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator

from donjon.bundle import BundleError, tree_digest
from donjon.supply import ComponentRef, SupplyError, list_components
from donjon.supply.sbom import FunctionIdentity, build_sbom, render_sbom
from supply_support import function_tree, vendor

_MIT = "License-Expression: MIT\n"


def _identity(tree: Path, version: int = 3) -> FunctionIdentity:
    return FunctionIdentity("shop", version, tree_digest(tree), 1_700_000_000.0)


def _components(document: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(document)["components"]}


def _props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = function_tree(tmp_path / "shop")
    vendor(root, "Flask_Login", "0.6.3", {"flask_login/__init__.py": b"X = 1\n"}, metadata=_MIT)
    vendor(
        root,
        "certifi",
        "2024.2.2",
        {"certifi/__init__.py": b"where = None\n", "certifi/cacert.pem": b"pem\n"},
        metadata="License: MPL-2.0\n",
    )
    vendor(
        root,
        "oldpkg",
        "1.0",
        {"oldpkg.py": b"pass\n"},
        metadata="License: UNKNOWN\nClassifier: License :: OSI Approved :: BSD License\n",
    )
    return root


def test_each_vendored_distribution_is_a_component_with_its_purl(tree: Path) -> None:
    """Every .deps distribution is listed by name, version and a normalised pypi purl."""
    document = build_sbom(tree, _identity(tree))
    assert sorted(list_components(document), key=lambda c: c.purl) == [
        ComponentRef("certifi", "2024.2.2", "pkg:pypi/certifi@2024.2.2"),
        ComponentRef("Flask_Login", "0.6.3", "pkg:pypi/flask-login@0.6.3"),
        ComponentRef("oldpkg", "1.0", "pkg:pypi/oldpkg@1.0"),
    ]


def test_the_function_is_the_metadata_component_with_its_bundle_digest(tree: Path) -> None:
    """metadata.component names the function, its version and its bundle digest."""
    identity = _identity(tree, version=7)
    root = json.loads(build_sbom(tree, identity))["metadata"]["component"]
    assert (root["name"], root["version"], root["type"]) == ("shop", "7", "application")
    assert root["hashes"] == [{"alg": "SHA-256", "content": identity.digest}]
    assert _props(root)["donjon:bundle-digest"] == f"sha256:{identity.digest}"


def test_a_component_hash_is_over_the_bytes_the_bundle_holds(tree: Path) -> None:
    """The SHA-256 is over the sorted 'path NUL sha256' lines of its files, as documented."""
    deps = tree / ".deps"
    info = "certifi-2024.2.2.dist-info"
    members = [
        "certifi/__init__.py",
        "certifi/cacert.pem",
        f"{info}/METADATA",
        f"{info}/RECORD",
        f"{info}/WHEEL",
    ]
    outer = hashlib.sha256()
    for rel in sorted(members):
        outer.update(f"{rel}\0{hashlib.sha256((deps / rel).read_bytes()).hexdigest()}\n".encode())
    component = _components(build_sbom(tree, _identity(tree)))["certifi"]
    assert component["hashes"] == [{"alg": "SHA-256", "content": outer.hexdigest()}]
    assert _props(component)["donjon:files"] == "5"


def test_licences_come_from_the_expression_the_field_or_the_classifiers(tree: Path) -> None:
    """License-Expression, a short License field, else the licence classifiers; never UNKNOWN."""
    found = _components(build_sbom(tree, _identity(tree)))
    assert found["Flask_Login"]["licenses"] == [{"license": {"id": "MIT"}}]
    assert found["certifi"]["licenses"] == [{"license": {"id": "MPL-2.0"}}]
    assert found["oldpkg"]["licenses"] == [{"license": {"name": "BSD License"}}]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_the_document_validates_against_the_cyclonedx_schema(tree: Path, fmt: str) -> None:
    """JSON and XML renderings pass CycloneDX 1.6's own schema validators."""
    rendered = render_sbom(build_sbom(tree, _identity(tree)), fmt)
    output = OutputFormat.JSON if fmt == "json" else OutputFormat.XML
    validator = make_schemabased_validator(output, SchemaVersion.V1_6)
    assert validator.validate_str(rendered) is None
    assert "pkg:pypi/flask-login@0.6.3" in rendered


def test_json_is_served_as_stored_and_the_same_version_gives_the_same_bytes(tree: Path) -> None:
    """A version's SBOM is deterministic, and its JSON rendering is the stored document."""
    first = build_sbom(tree, _identity(tree))
    assert build_sbom(tree, _identity(tree)) == first
    assert render_sbom(first, "json") == first
    assert build_sbom(tree, _identity(tree, version=4)) != first


def test_an_altered_vendored_file_changes_its_hash_and_is_counted(tree: Path) -> None:
    """A file patched after install: a new component hash, and RECORD's mismatch counted."""
    before = _components(build_sbom(tree, _identity(tree)))["certifi"]
    (tree / ".deps/certifi/cacert.pem").write_bytes(b"an attacker's CA\n")
    after = _components(build_sbom(tree, _identity(tree)))["certifi"]
    assert after["hashes"] != before["hashes"]
    assert _props(after)["donjon:record:altered"] == "1"
    assert _props(before)["donjon:record:altered"] == "0"


def test_compiled_bytecode_is_covered_by_the_hash(tree: Path) -> None:
    """The unchecked pyc beside a listed module (what Python imports) is part of the hash."""
    cache = tree / ".deps/flask_login/__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-311.pyc").write_bytes(b"compiled")
    before = _components(build_sbom(tree, _identity(tree)))["Flask_Login"]["hashes"]
    (cache / "__init__.cpython-311.pyc").write_bytes(b"swapped")
    after = _components(build_sbom(tree, _identity(tree)))["Flask_Login"]["hashes"]
    assert before != after


def test_files_no_distribution_claims_are_counted(tree: Path) -> None:
    """A module dropped into .deps by hand is counted as unattributed on the function."""
    (tree / ".deps/sneaky.py").write_text("import os\n")
    root = json.loads(build_sbom(tree, _identity(tree)))["metadata"]["component"]
    assert _props(root)["donjon:deps:unattributed-files"] == "1"


def test_record_paths_outside_deps_are_missing_never_read(tmp_path: Path) -> None:
    """A RECORD line pointing out of .deps/ is counted missing; the file is not hashed."""
    root = function_tree(tmp_path / "shop")
    (tmp_path / "secret.txt").write_text("host file\n")
    vendor(root, "evil", "1.0", {"evil.py": b""}, extra_record=("../../secret.txt,,10",))
    component = _components(build_sbom(root, _identity(root)))["evil"]
    assert _props(component)["donjon:record:missing"] == "1"
    assert _props(component)["donjon:files"] == "4"


def test_control_characters_in_metadata_cannot_break_the_document(tmp_path: Path) -> None:
    """A licence or name holding control characters still gives schema-valid XML."""
    root = function_tree(tmp_path / "shop")
    vendor(root, "odd", "1.0", {"odd.py": b""}, metadata="License: MIT\x01\x1b[2J\n")
    rendered = render_sbom(build_sbom(root, _identity(root)), "xml")
    validator = make_schemabased_validator(OutputFormat.XML, SchemaVersion.V1_6)
    assert validator.validate_str(rendered) is None
    assert "\x1b" not in rendered


def test_a_bundle_without_dependencies_has_no_components(tmp_path: Path) -> None:
    """No .deps/: an SBOM of the function alone, still valid."""
    root = function_tree(tmp_path / "shop")
    document = build_sbom(root, _identity(root))
    assert list_components(document) == []
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    assert validator.validate_str(document) is None


def test_metadata_without_a_name_is_a_clear_error(tmp_path: Path) -> None:
    """A dist-info whose METADATA lacks Name is refused, naming it."""
    root = function_tree(tmp_path / "shop")
    info = vendor(root, "broken", "1.0", {"broken.py": b""})
    (info / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 1.0\n")
    with pytest.raises(BundleError, match=r"broken-1\.0\.dist-info/METADATA has no Name"):
        build_sbom(root, _identity(root))


def test_an_altered_stored_document_is_a_clear_error() -> None:
    """Reading components of a document that is not an SBOM raises SupplyError."""
    with pytest.raises(SupplyError, match="cannot be read"):
        list_components('{"components": 3}')
    with pytest.raises(SupplyError, match="unknown SBOM format"):
        render_sbom("{}", "spdx")


def test_a_distribution_installed_at_the_root_is_listed_with_its_location(tmp_path: Path) -> None:
    """`pip install -t .` (a Lambda bundle): the distribution at the bundle's root is a
    component like a vendored one, hashed over its files relative to the root, with
    `donjon:location` "."; the root's own files are not unattributed."""
    tree = function_tree(tmp_path / "fn")
    vendor(tree, "certifi", "2024.2.2", {"certifi/__init__.py": b"x = 1\n"}, site=".")
    vendor(tree, "oldpkg", "1.0", {"oldpkg.py": b"y = 2\n"})
    document = build_sbom(tree, _identity(tree))
    found = _components(document)
    assert _props(found["certifi"])["donjon:location"] == "."
    assert _props(found["oldpkg"])["donjon:location"] == ".deps"
    info = "certifi-2024.2.2.dist-info"
    outer = hashlib.sha256()
    for rel in sorted(
        ["certifi/__init__.py", f"{info}/METADATA", f"{info}/RECORD", f"{info}/WHEEL"]
    ):
        outer.update(f"{rel}\0{hashlib.sha256((tree / rel).read_bytes()).hexdigest()}\n".encode())
    assert found["certifi"]["hashes"] == [{"alg": "SHA-256", "content": outer.hexdigest()}]
    root = json.loads(document)["metadata"]["component"]
    assert _props(root)["donjon:deps:unattributed-files"] == "0"
    assert [c.name for c in list_components(document)] == ["certifi", "oldpkg"]


def test_a_legacy_egg_info_distribution_is_a_component(tmp_path: Path) -> None:
    """An sdist installed the legacy way (`*.egg-info/PKG-INFO`, files listed in
    `installed-files.txt` relative to it), in `.deps/` or at the root, is a component
    whose hash covers the files it lists; a listed path outside the site is missing."""
    tree = function_tree(tmp_path / "fn")
    for site, name in ((tree / ".deps", "oldlib"), (tree, "rootlib")):
        info = site / f"{name}-1.2-py3.11.egg-info"
        info.mkdir(parents=True)
        (info / "PKG-INFO").write_text(f"Metadata-Version: 1.1\nName: {name}\nVersion: 1.2\n")
        (info / "installed-files.txt").write_text(f"../{name}.py\nPKG-INFO\n../../../x\n")
        (site / f"{name}.py").write_text("X = 1\n")
    document = build_sbom(tree, _identity(tree))
    found = _components(document)
    assert {n: c["version"] for n, c in found.items()} == {"oldlib": "1.2", "rootlib": "1.2"}
    assert _props(found["oldlib"])["donjon:location"] == ".deps"
    assert _props(found["rootlib"])["donjon:location"] == "."
    assert _props(found["oldlib"])["donjon:files"] == "3"  # module, PKG-INFO, the listing
    assert _props(found["oldlib"])["donjon:record:missing"] == "1"
    root = json.loads(document)["metadata"]["component"]
    assert _props(root)["donjon:deps:unattributed-files"] == "0"


@pytest.mark.parametrize(
    ("name", "version", "refused"),
    [
        ("https://evil.example/x", "1.0", "Name is not a distribution name"),
        ("a" * 201, "1.0", "Name is not a distribution name"),
        ("ok", "1.0 ; rm", "Version is not a version"),
        ("ok", "1." + "0" * 200, "Version is not a version"),
    ],
)
def test_a_name_or_version_that_is_not_one_is_refused(
    tmp_path: Path, name: str, version: str, refused: str
) -> None:
    """A name that is a URL or too long, a version with spaces or too long: refused as a
    BundleError naming the field, never copied into the document."""
    root = function_tree(tmp_path / "shop")
    info = vendor(root, "odd", "1.0", {"odd.py": b""})
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    with pytest.raises(BundleError, match=refused):
        build_sbom(root, _identity(root))


def test_licence_fields_are_bounded(tmp_path: Path) -> None:
    """A License-Expression past 1,000 characters, or more than 32 licence classifiers,
    is refused; a long classifier name is cut to 100 characters."""
    root = function_tree(tmp_path / "shop")
    info = vendor(root, "odd", "1.0", {"odd.py": b""})
    head = "Metadata-Version: 2.1\nName: odd\nVersion: 1.0\n"
    (info / "METADATA").write_text(head + "License-Expression: " + "MIT OR " * 200 + "MIT\n")
    with pytest.raises(BundleError, match="License-Expression is longer"):
        build_sbom(root, _identity(root))
    many = "".join(f"Classifier: License :: L{i}\n" for i in range(33))
    (info / "METADATA").write_text(head + many)
    with pytest.raises(BundleError, match="more than 32 licence classifiers"):
        build_sbom(root, _identity(root))
    (info / "METADATA").write_text(head + "Classifier: License :: " + "x" * 500 + "\n")
    (licence,) = _components(build_sbom(root, _identity(root)))["odd"]["licenses"]
    assert len(licence["license"]["name"]) == 100
