"""The role and policies of a Serverless function, in both syntaxes.

Current: ``provider.iam.role`` is a mapping (``statements``, ``managedPolicies``) or a
role (an ARN, or the logical id of a role in ``resources``). Legacy:
``provider.iamRoleStatements``, ``provider.iamManagedPolicies``, ``provider.role``.
A function's own ``role`` wins over the provider's; a function's ``iamRoleStatements``
(the serverless-iam-roles-per-function plugin) gives it a role of its own, adding the
provider's statements only with ``iamRoleStatementsInherit: true``. Without any of
these the function runs with the role Serverless makes (``IamRoleLambdaExecution``:
its log permissions and the statements above).
"""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.policies import managed_policy, role_policies
from donjon.scan.iac.cfn.props import as_bool, as_str
from donjon.scan.iac.cfn.values import RList, RMap, options, plain, val
from donjon.scan.iac.model import Policy, Val
from donjon.scan.iac.serverless.document import Document
from donjon.scan.iac.statements import parse_policy

__all__ = ["function_role"]

DEFAULT_ROLE = "IamRoleLambdaExecution"


def _statements(name: str, node: object, line: int) -> list[Policy]:
    if node is None:
        return []
    document = plain(node)
    statements = parse_policy(document, line)
    return [Policy(name, line, statements, conditional=any(s.conditional for s in statements))]


def _managed(doc: Document, node: object, line: int) -> list[Policy]:
    out: list[Policy] = []
    items = node if isinstance(node, RList) else RList(line) if node is None else [node]
    for index, item in enumerate(items):
        at = items.line_at(index) if isinstance(items, RList) else line
        for option, branch in options(item):
            out.append(managed_policy(option, at, branch, doc.resources))
    return out


def _provider(doc: Document) -> tuple[object, int, list[Policy]]:
    """The provider's role as written (None when Serverless makes it) with its line,
    and the statements and managed policies of the role Serverless makes."""
    provider = doc.section("provider")
    iam = provider.get("iam")
    policies: list[Policy] = []
    role: object = provider.get("role")
    role_line = provider.line_of("role")
    if isinstance(iam, RMap):
        current = iam.get("role")
        at = iam.line_of("role")
        if isinstance(current, RMap):
            policies += _statements(
                "provider.iam.role.statements",
                current.get("statements"),
                current.line_of("statements"),
            )
            policies += _managed(
                doc, current.get("managedPolicies"), current.line_of("managedPolicies")
            )
        elif current is not None:
            role, role_line = current, at
    policies += _statements(
        "provider.iamRoleStatements",
        provider.get("iamRoleStatements"),
        provider.line_of("iamRoleStatements"),
    )
    policies += _managed(
        doc, provider.get("iamManagedPolicies"), provider.line_of("iamManagedPolicies")
    )
    return role, role_line, policies


def _named_role(doc: Document, role: object, line: int) -> tuple[Val[str], tuple[Policy, ...]]:
    """A role given by name (a logical id of ``resources``), ARN or intrinsic."""
    value = val(role, line, as_str, what="role")
    if isinstance(role, str) and role in doc.resources.resources:
        return Val.of(role, line), role_policies(doc.resources, {"Ref": role}, False)
    raw = role
    if isinstance(role, str) and role.startswith("${") and role.endswith("}"):
        raw = {"Fn::GetAtt": role[2:-1].split(".", 1)}  # !GetAtt Role.Arn, resolved
    return value, role_policies(doc.resources, raw, False)


def function_role(doc: Document, function: RMap, line: int) -> tuple[Val[str], tuple[Policy, ...]]:
    """The role of one function and the policies the scan can see on it."""
    if "role" in function:
        return _named_role(doc, function["role"], function.line_of("role"))
    provider_role, role_line, provider_policies = _provider(doc)
    own = function.get("iamRoleStatements")
    if own is not None:
        policies = _statements("iamRoleStatements", own, function.line_of("iamRoleStatements"))
        inherit = as_bool(function.get("iamRoleStatementsInherit")) is True
        if inherit:
            policies += provider_policies
        return Val.of(f"{function_name(function, line)}IamRole", line), tuple(policies)
    if provider_role is not None:
        return _named_role(doc, provider_role, role_line)
    return Val.of(DEFAULT_ROLE, line), tuple(provider_policies)


def function_name(function: Mapping[str, object], line: int) -> str:
    """A stable name for a function's own role (the plugin names it after the function)."""
    name = function.get("name")
    return str(name) if isinstance(name, str) else f"function{line}"
