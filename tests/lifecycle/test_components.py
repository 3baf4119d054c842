"""A version's components as read from its stored bundle's .deps/ (lifecycle/components.py)."""

from __future__ import annotations

from pathlib import Path

from packaging.version import Version

from donjon.bundle import BundleStore
from donjon.lifecycle.components import Component, components_of
from donjon.store import FunctionRecord

DIGEST = "ab" * 32


def _record() -> FunctionRecord:
    return FunctionRecord("resize", 1, DIGEST, "{}", 0.0, "key:0123456789abcdef")


def _meta(directory: Path, name: str, version: str, file: str = "METADATA") -> None:
    directory.mkdir(parents=True)
    (directory / file).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_vendored_distributions_are_the_components(tmp_path: Path) -> None:
    """dist-info and egg-info metadata under .deps/ give canonical names and versions."""
    bundles = BundleStore(tmp_path)
    deps = bundles.path(DIGEST) / ".deps"
    _meta(deps / "Jinja2-2.10.dist-info", "Jinja2", "2.10")
    _meta(deps / "left_pad-1.0.egg-info", "left_pad", "1.0", "PKG-INFO")
    assert components_of(bundles, _record()) == [
        Component("jinja2", Version("2.10")),
        Component("left-pad", Version("1.0")),
    ]


def test_a_bundle_without_vendored_packages_has_none(tmp_path: Path) -> None:
    """No .deps/ (or no bundle on this node): no components, no error."""
    assert components_of(BundleStore(tmp_path), _record()) == []


def test_links_and_bad_versions_are_not_read(tmp_path: Path) -> None:
    """A METADATA that is a symbolic link, or a version PEP 440 cannot read, is skipped."""
    bundles = BundleStore(tmp_path)
    deps = bundles.path(DIGEST) / ".deps"
    outside = tmp_path / "outside"
    _meta(outside, "secretpkg", "1.0")
    (deps / "linked-1.0.dist-info").mkdir(parents=True)
    (deps / "linked-1.0.dist-info" / "METADATA").symlink_to(outside / "METADATA")
    _meta(deps / "odd-x.dist-info", "odd", "not a version")
    assert components_of(bundles, _record()) == []
