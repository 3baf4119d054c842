"""IAM in a Terraform module: policy documents read into statements, and the
policies a role gets.

A role (``aws_iam_role.fn``) gets, wherever they are written in the module: its
``inline_policy`` blocks and ``managed_policy_arns``; every ``aws_iam_role_policy``
whose ``role`` names it (by reference, ``aws_iam_role.fn.name``/``.id``, or by its
literal name); every ``aws_iam_role_policy_attachment`` (and
``aws_iam_policy_attachment`` listing it in ``roles``) with the policy it attaches:
an ``aws_iam_policy`` of the module read statement by statement, an AWS managed
policy ARN (``arn:aws:iam::aws:policy/AdministratorAccess``) kept as `managed` for
the rules' table of managed policies, an unresolved ARN as an unresolved policy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from donjon.scan.iac.model import Policy, Statement, Unresolved
from donjon.scan.iac.statements import parse_policy
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.policy_document import decode
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import Choice, Ref, TooLarge, bounded, describe

__all__ = ["role_address", "role_policies", "statements"]


def statements(value: Any, line: int, path: str) -> tuple[Statement, ...]:
    """The statements of an evaluated policy attribute (JSON text, ``jsonencode``, a
    policy document's ``.json``); each option of a `Choice` as conditional."""
    if value is None:
        return ()
    options = list(value) if isinstance(value, Choice) else [value]
    out: list[Statement] = []
    for option in options:
        try:
            document = bounded(decode(option, line))
        except TooLarge:
            document = Unresolved(describe(option), "policy too large to read")
        if isinstance(document, dict) and not {"Statement", "Effect"} & document.keys():
            continue  # a document without statements grants nothing
        parsed = parse_policy(document, line, conditional=isinstance(value, Choice))
        out.extend(replace(s, path=path) for s in parsed)
    return tuple(out)


def role_address(module: Module, value: Any) -> str | None:
    """The ``aws_iam_role`` of the module that `value` (a role ARN, name or id as
    evaluated) names, if any."""
    if isinstance(value, Ref):
        return value.address if value.address.startswith("aws_iam_role.") else None
    if isinstance(value, str):
        return module.index("aws_iam_role", "name").get(value)
    return None


def _names(module: Module, value: Any, role: str) -> bool:
    options = list(value) if isinstance(value, Choice | list) else [value]
    return any(role_address(module, o) == role for o in options if isinstance(o, str))


def _document_policy(module: Module, name: str, block: Block, attribute: str) -> Policy:
    value, line = module.attr(block, attribute)
    return Policy(
        name,
        line or block.line,
        statements=statements(value, line or block.line, block.path),
        conditional=isinstance(value, Choice),
        path=block.path,
    )


def _attached(module: Module, value: Any, line: int, path: str) -> list[Policy]:
    """The policies an attachment's ``policy_arn`` (or a list of ARNs) names."""
    if isinstance(value, Choice | list):
        conditional = isinstance(value, Choice)
        flat = [
            i if not isinstance(i, list | Choice) else Unresolved(describe(i), "nested")
            for i in value
        ]
        out = [p for item in flat for p in _attached(module, item, line, path)]
        return [replace(p, conditional=p.conditional or conditional) for p in out]
    if isinstance(value, Ref) and value.address.startswith("aws_iam_policy."):
        block = module.resources[value.address]
        return [_document_policy(module, value.address, block, "policy")]
    if isinstance(value, Unresolved):
        return [Policy(value.expression, line, unresolved=(value,), path=path)]
    if isinstance(value, str):
        return [Policy(value.rsplit("/", 1)[-1], line, managed=value, path=path)]
    return []


def role_policies(module: Module, role: str) -> tuple[Policy, ...]:
    """Every policy the module gives the role at address `role`."""
    block = module.resources[role]
    found: list[Policy] = []
    for inline in block.nested("inline_policy"):
        name, _ = module.attr(inline, "name")
        found.append(_document_policy(module, f"{role}.inline_policy.{name}", inline, "policy"))
    arns, line = module.attr(block, "managed_policy_arns")
    if line:
        found.extend(_attached(module, arns, line, block.path))
    for address, policy in module.of_type("aws_iam_role_policy"):
        if _names(module, module.attr(policy, "role")[0], role):
            found.append(_document_policy(module, address, policy, "policy"))
    for kind, field in (
        ("aws_iam_role_policy_attachment", "role"),
        ("aws_iam_policy_attachment", "roles"),
    ):
        for _, attachment in module.of_type(kind):
            if _names(module, module.attr(attachment, field)[0], role):
                arn, line = module.attr(attachment, "policy_arn")
                found.extend(_attached(module, arn, line or attachment.line, attachment.path))
    return tuple(found)
