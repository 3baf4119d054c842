"""The IaC roles: a `TemplateFormat` reads one kind of template into `App`s, a
`Check` reads `App`s and returns findings.

Formats (one package each): `cfn` (SAM and CloudFormation, YAML and JSON),
`serverless` (Serverless Framework), `terraform` (AWS, Azure and Google). Checks
are grouped by concern in modules of `donjon.scan.iac` (`iam_rules`,
`exposure_rules`, ...), each exporting its `RULES` and `CHECKS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from donjon.scan.errors import ScanError

if TYPE_CHECKING:
    from donjon.scan.iac.model import App
    from donjon.scan.model import Finding
    from donjon.scan.project import Project

__all__ = ["Check", "IacError", "Loaded", "TemplateFormat"]


class IacError(ScanError):
    """A template could not be read or resolved (reported as a note, never fatal)."""

    title = "Template error"


@dataclass(frozen=True)
class Loaded:
    """What one format made of a project: the apps it read and what it could not read."""

    apps: tuple[App, ...] = ()
    notes: tuple[str, ...] = ()


class TemplateFormat(ABC):
    """One template language: finds its files in a project and resolves each into an `App`."""

    #: Short name shown in notes ("cloudformation", "serverless", "terraform").
    name: ClassVar[str]

    @abstractmethod
    def load(self, project: Project) -> Loaded:
        """Every app of this format in `project`. A file that claims to be this format but
        does not parse or resolve is a note naming the file and why, not an exception."""


#: A check: findings over one app (each built from a rule of the catalog).
Check = Callable[["App"], Iterable["Finding"]]
