"""The scanners: each a `donjon.scan.interface.Scanner` over one project.

`CodeScanner` (Donjon's taint analysis, in `donjon.scan.python`), `BanditScanner`
(Bandit's checks that complement it), `SecretScanner` (with the token formats of
`tokens`), `DependencyScanner` (against `donjon.scan.deps`), `ManifestScanner` and
`IacScanner` (templates, `donjon.scan.iac`).
"""

from __future__ import annotations

from donjon.scan.scanners.bandit_checks import BanditScanner
from donjon.scan.scanners.code import CodeScanner
from donjon.scan.scanners.dependencies import DependencyScanner
from donjon.scan.scanners.iac import IacScanner
from donjon.scan.scanners.manifest import ManifestScanner
from donjon.scan.scanners.secrets import SecretScanner

__all__ = [
    "BanditScanner",
    "CodeScanner",
    "DependencyScanner",
    "IacScanner",
    "ManifestScanner",
    "SecretScanner",
]
