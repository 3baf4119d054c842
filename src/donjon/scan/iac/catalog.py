"""The IaC rules and checks, gathered from their modules, and the template formats.

Ids: DJ-IAC-001..009 IAM (`iam`, 001..005 used), 010..019 exposure: routes, storage, invoke
permissions, CORS (`exposure_rules`), 020..049 configuration: runtimes, secrets,
encryption, failure handling, concurrency, logging and tracing, identity
(`config_rules`, `ops_rules`, `identity_rules`). Ids never change meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from donjon.scan.iac import config_rules, exposure_rules, iam, identity_rules, ops_rules
from donjon.scan.iac.interface import Check, TemplateFormat
from donjon.scan.iac.model import App
from donjon.scan.rule import Rule

__all__ = ["CHECKS", "IAC_RULES", "NOTES", "formats"]

_GROUPS = (iam, exposure_rules, config_rules, ops_rules, identity_rules)
IAC_RULES: tuple[Rule, ...] = tuple(r for group in _GROUPS for r in group.RULES)
CHECKS: tuple[Check, ...] = tuple(c for group in _GROUPS for c in group.CHECKS)
#: What the scan should say about the checks themselves, given every app read (the
#: runtime table's age).
NOTES: tuple[Callable[[Sequence[App]], tuple[str, ...]], ...] = (config_rules.runtime_data_notes,)


def formats() -> tuple[TemplateFormat, ...]:
    """Every template format, imported on first use (their parsers are not light)."""
    from donjon.scan.iac.cfn import CfnFormat
    from donjon.scan.iac.terraform import TerraformFormat

    return (CfnFormat(), TerraformFormat())
