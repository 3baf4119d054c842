"""The IaC rules and checks, gathered from their modules, and the template formats.

Ids: DJ-IAC-001..009 IAM (`iam_rules`), 010..019 exposure: routes, storage, invoke
permissions, CORS (`exposure_rules`), 020..049 configuration: runtimes, secrets,
encryption, failure handling, concurrency, logging and tracing, identity
(`config_rules`). Ids never change meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from donjon.scan.iac import config_rules, exposure_rules, identity_rules, ops_rules
from donjon.scan.iac.interface import Check, TemplateFormat
from donjon.scan.iac.model import App
from donjon.scan.rule import Rule

__all__ = ["CHECKS", "IAC_RULES", "NOTES", "formats"]

IAC_RULES: tuple[Rule, ...] = ()
CHECKS: tuple[Check, ...] = ()
IAC_RULES += exposure_rules.RULES + config_rules.RULES + ops_rules.RULES + identity_rules.RULES
CHECKS += exposure_rules.CHECKS + config_rules.CHECKS + ops_rules.CHECKS + identity_rules.CHECKS
#: What the scan should say about the checks themselves, given every app read (the
#: runtime table's age).
NOTES: tuple[Callable[[Sequence[App]], tuple[str, ...]], ...] = (config_rules.runtime_data_notes,)


def formats() -> tuple[TemplateFormat, ...]:
    """Every template format, imported on first use (their parsers are not light)."""
    return ()
