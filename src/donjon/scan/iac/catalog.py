"""The IaC rules and checks, gathered from their modules, and the template formats.

Ids: DJ-IAC-001..009 IAM (`iam_rules`), 010..019 exposure: routes, storage, invoke
permissions, CORS (`exposure_rules`), 020..049 configuration: runtimes, secrets,
encryption, failure handling, concurrency, logging and tracing, identity
(`config_rules`). Ids never change meaning.
"""

from __future__ import annotations

from donjon.scan.iac.interface import Check, TemplateFormat
from donjon.scan.rule import Rule

__all__ = ["CHECKS", "IAC_RULES", "formats"]

IAC_RULES: tuple[Rule, ...] = ()
CHECKS: tuple[Check, ...] = ()


def formats() -> tuple[TemplateFormat, ...]:
    """Every template format, imported on first use (their parsers are not light)."""
    return ()
