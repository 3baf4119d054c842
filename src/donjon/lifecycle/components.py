"""The third-party components of a deployed version: what the advisory watch checks.

A node reads them from each version's stored SBOM (`sbom_components`: the SBOM the
deploy made, vouched for by its signed statement). For a version whose SBOM no statement
vouches for (deployed before statements were kept), and without an SBOM service (a
watch built on its own, as tests do), they are read from the stored bundle: the
distributions vendored under ``.deps/`` and those installed at its root (``pip install
-t .``; their ``*.dist-info/METADATA`` or ``*.egg-info/PKG-INFO``), read the way the
deploy scan reads installed distributions (`donjon.scan.deps.parse_installed`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from donjon.bundle import BundleStore
from donjon.scan.deps import parse_installed
from donjon.scan.project import DEPS_DIR, SourceFile
from donjon.store import FunctionRecord
from donjon.supply import SupplyChain

__all__ = ["Component", "components_of", "sbom_components"]

#: Directory levels under .deps/ looked into (as the deploy scan does).
_MAX_DEPTH = 4
_INFO_SUFFIXES = (".dist-info", ".egg-info")
#: Bytes of one METADATA file read at most (the headers come first).
_MAX_METADATA_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Component:
    """A package at an exact version (its canonical name)."""

    name: str
    version: Version


def sbom_components(supply: SupplyChain, record: FunctionRecord) -> list[Component] | None:
    """The components the version's stored SBOM lists (blocking: call it on a thread);
    None when no signed statement vouches for that SBOM (read the bundle instead: a row
    of the database is no evidence by itself).

    A component whose version is not a PEP 440 version cannot be matched against an
    advisory's ranges and is left out, as the deploy scan leaves it out.
    """
    refs = supply.components(record.name, record.version)
    if refs is None:
        return None
    found: dict[tuple[str, str], Component] = {}
    for ref in refs:
        try:
            found[(ref.name, ref.version)] = Component(ref.name, Version(ref.version))
        except ValueError:  # InvalidVersion, or a number past int()'s digit limit
            continue
    return [found[k] for k in sorted(found)]


def components_of(bundles: BundleStore, record: FunctionRecord) -> list[Component]:
    """The vendored distributions of `record`'s stored bundle, by name (none: an empty list)."""
    root = bundles.path(record.digest)
    found: dict[tuple[str, str], Component] = {}
    deps = root / DEPS_DIR
    if deps.is_dir() and not deps.is_symlink():
        for dirpath, dirnames, _ in os.walk(deps):
            here = Path(dirpath)
            if len(here.relative_to(deps).parts) > _MAX_DEPTH:
                dirnames.clear()
                continue
            _collect(here, sorted(dirnames), root, found)
            dirnames[:] = [d for d in dirnames if not d.endswith(_INFO_SUFFIXES)]
    if root.is_dir():  # installed beside the code: the root's own dist-info folders only
        with os.scandir(root) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        _collect(root, names, root, found)
    return [found[k] for k in sorted(found)]


def _collect(
    here: Path, names: list[str], root: Path, found: dict[tuple[str, str], Component]
) -> None:
    """The components of the `*.dist-info` and `*.egg-info` folders among `names`."""
    for name in names:
        if not name.endswith(_INFO_SUFFIXES):
            continue
        meta = here / name / ("METADATA" if name.endswith(".dist-info") else "PKG-INFO")
        component = _read(meta, root)
        if component is not None:
            found[(component.name, str(component.version))] = component


def _read(meta: Path, root: Path) -> Component | None:
    if meta.is_symlink() or not meta.is_file():
        return None
    try:
        with meta.open("rb") as f:
            text = f.read(_MAX_METADATA_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    rel = meta.relative_to(root).as_posix()
    installed = parse_installed(SourceFile(meta, rel, text))
    if installed is None or installed.version is None:
        return None
    return Component(installed.name, installed.version)
