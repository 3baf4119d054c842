"""Dependency and advisory data: lock and requirements files, OSV advisories, CVSS.

What `donjon.scan.scanners.dependencies` checks against; no findings are made here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from donjon.scan.deps.advisories import Advisory, AdvisoryDB, AffectedRange
    from donjon.scan.deps.advisory_cache import cache_dir_for
    from donjon.scan.deps.depfiles import Dependency, parse_dependency_file, parse_installed
    from donjon.scan.deps.osv_update import (
        OSV_PYPI_EXPORT_URL,
        advisories_dir,
        update_advisory_db,
    )

__all__ = [
    "OSV_PYPI_EXPORT_URL",
    "Advisory",
    "AdvisoryDB",
    "AffectedRange",
    "Dependency",
    "advisories_dir",
    "cache_dir_for",
    "parse_dependency_file",
    "parse_installed",
    "update_advisory_db",
]

if not TYPE_CHECKING:  # mypy would make every name of a module __getattr__ Any
    __getattr__ = lazy_exports(
        globals(),
        {
            "advisories": ("Advisory", "AdvisoryDB", "AffectedRange"),
            "advisory_cache": ("cache_dir_for",),
            "depfiles": ("Dependency", "parse_dependency_file", "parse_installed"),
            "osv_update": ("OSV_PYPI_EXPORT_URL", "advisories_dir", "update_advisory_db"),
        },
    )
