"""Function bundles: building (vendoring, packing) and content-addressed storage."""

from __future__ import annotations

from donjon.bundle.archive import BundleError, tree_digest
from donjon.bundle.build import DEPS_DIR, build_bundle
from donjon.bundle.store import BundleStore
from donjon.bundle.unpack import unpack

__all__ = ["DEPS_DIR", "BundleError", "BundleStore", "build_bundle", "tree_digest", "unpack"]
