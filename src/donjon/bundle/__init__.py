"""Function bundles: building (vendoring, packing) and content-addressed storage."""

from __future__ import annotations

from donjon.bundle.archive import BundleError, tree_digest, unpack
from donjon.bundle.build import DEPS_DIR, build_bundle
from donjon.bundle.store import BundleStore

__all__ = ["DEPS_DIR", "BundleError", "BundleStore", "build_bundle", "tree_digest", "unpack"]
