"""Privilege escalation paths: sets of IAM actions that together let a principal gain
permissions it was not given.

From the published AWS escalation methods (Rhino Security Labs, "AWS IAM Privilege
Escalation - Methods and Mitigation", 2018, and the paths later tools such as
Cloudsplaining and PMapper check), plus ``sts:AssumeRole`` on every role. Each path's
first action is its key: a finding points at the statement granting it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PATHS", "ROLE_HANDOVER", "EscalationPath", "key_actions"]

ROLE_HANDOVER = "iam:passrole"


@dataclass(frozen=True)
class EscalationPath:
    """Actions (case-folded ``service:name``) that together escalate, and how."""

    actions: tuple[str, ...]
    how: str
    #: Only an unbounded grant of the key action escalates (passing or assuming one
    #: named role is what those actions are for).
    unbounded_only: bool = False

    @property
    def key(self) -> str:
        return self.actions[0]


def _path(actions: str, how: str, *, unbounded_only: bool = False) -> EscalationPath:
    return EscalationPath(tuple(a.lower() for a in actions.split()), how, unbounded_only)


PATHS: tuple[EscalationPath, ...] = (
    _path(
        "iam:PassRole lambda:CreateFunction lambda:InvokeFunction",
        "create a function with any role and invoke it",
        unbounded_only=True,
    ),
    _path(
        "iam:PassRole lambda:CreateFunction lambda:CreateEventSourceMapping",
        "create a function with any role and trigger it from an event source",
        unbounded_only=True,
    ),
    _path("iam:PassRole ec2:RunInstances", "start an instance with any role", unbounded_only=True),
    _path(
        "iam:PassRole cloudformation:CreateStack",
        "create a stack that acts with any role",
        unbounded_only=True,
    ),
    _path(
        "iam:PassRole glue:CreateDevEndpoint",
        "create a Glue endpoint with any role",
        unbounded_only=True,
    ),
    _path(
        "iam:PassRole datapipeline:CreatePipeline datapipeline:PutPipelineDefinition",
        "run a data pipeline with any role",
        unbounded_only=True,
    ),
    _path("iam:CreatePolicyVersion", "rewrite a managed policy as a new default version"),
    _path("iam:SetDefaultPolicyVersion", "switch a managed policy to a broader version"),
    _path("iam:AttachRolePolicy", "attach any managed policy to a role"),
    _path("iam:AttachUserPolicy", "attach any managed policy to a user"),
    _path("iam:AttachGroupPolicy", "attach any managed policy to a group"),
    _path("iam:PutRolePolicy", "write an inline policy into a role"),
    _path("iam:PutUserPolicy", "write an inline policy into a user"),
    _path("iam:PutGroupPolicy", "write an inline policy into a group"),
    _path("iam:AddUserToGroup", "join a more privileged group"),
    _path("iam:CreateAccessKey", "create access keys for another user"),
    _path("iam:CreateLoginProfile", "set a console password for another user"),
    _path("iam:UpdateLoginProfile", "change another user's console password"),
    _path(
        "iam:UpdateAssumeRolePolicy sts:AssumeRole",
        "rewrite a role's trust policy and assume it",
    ),
    _path("lambda:UpdateFunctionCode", "replace the code of a function that runs as another role"),
    _path("glue:UpdateDevEndpoint", "take over a Glue endpoint that runs as another role"),
    _path("sts:AssumeRole", "assume any role that trusts the account", unbounded_only=True),
)


def key_actions() -> frozenset[str]:
    """Every path's key action, and iam:PassRole (reported on its own when unbounded)."""
    return frozenset({p.key for p in PATHS} | {ROLE_HANDOVER})
