"""What a function's role grants: the role it names, followed into the template.

A role given as ``Ref``/``Fn::GetAtt`` to an ``AWS::IAM::Role`` of the template
brings that role's inline ``Policies``, its ``ManagedPolicyArns`` and every
``AWS::IAM::Policy``/``AWS::IAM::ManagedPolicy`` attached to it through ``Roles``.
A SAM function without ``Role`` gets the role SAM makes from its ``Policies``:
managed policy names or ARNs, inline documents, and policy templates expanded from
SAM's own data. A role given as an ARN (or a parameter) is kept as written; what it
grants is not in the template.
"""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.managed import known_statements, managed_arn, managed_name
from donjon.scan.iac.cfn.managed import policy_template as find_template
from donjon.scan.iac.cfn.props import referenced
from donjon.scan.iac.cfn.template import Resource, Template
from donjon.scan.iac.cfn.values import RList, RMap, options, plain
from donjon.scan.iac.model import Policy, Unresolved
from donjon.scan.iac.statements import parse_policy

__all__ = ["role_policies", "sam_policies"]


def _items(value: object, line: int) -> list[tuple[object, bool, int]]:
    """The entries of a string-or-list property, each with whether it is conditional
    and its line."""
    out: list[tuple[object, bool, int]] = []
    for option, cond in options(value):
        if isinstance(option, list):
            for index, item in enumerate(option):
                at = option.line_at(index) if isinstance(option, RList) else line
                out.extend((inner, cond or c, at or line) for inner, c in options(item))
        else:
            out.append((option, cond, line))
    return out


def managed_policy(value: object, line: int, conditional: bool, template: Template) -> Policy:
    """A managed policy named by ARN, by SAM name, or by a reference to an
    ``AWS::IAM::ManagedPolicy`` of the template (then its content is known)."""
    if isinstance(value, Unresolved):
        return Policy(value.expression, line, conditional=conditional, unresolved=(value,))
    if not isinstance(value, str):
        why = Unresolved(str(value), "not a policy name or ARN")
        return Policy(str(value), line, conditional=conditional, unresolved=(why,))
    local = value[2:-1] if value.startswith("${") and value.endswith("}") else ""
    resource = template.resources.get(local)
    if resource is not None and resource.type == "AWS::IAM::ManagedPolicy":
        return _document_policy(resource, conditional)
    arn = managed_arn(value)
    statements = parse_policy(list(known_statements(arn)), line, conditional=conditional)
    return Policy(managed_name(arn), line, statements, managed=arn, conditional=conditional)


def _document_policy(resource: Resource, conditional: bool) -> Policy:
    document = resource.properties.get("PolicyDocument")
    name = resource.properties.get("PolicyName") or resource.properties.get("ManagedPolicyName")
    line = resource.properties.line_of("PolicyDocument") or resource.where.line
    cond = conditional or resource.conditional
    statements = parse_policy(plain(document, cond), line, conditional=cond)
    return Policy(
        name if isinstance(name, str) else resource.name, line, statements, conditional=cond
    )


def _attached(template: Template, role: str, conditional: bool) -> list[Policy]:
    out: list[Policy] = []
    for resource in template.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        roles = resource.raw.get("Roles")
        if isinstance(roles, list) and any(referenced(r) == role for r in roles):
            out.append(_document_policy(resource, conditional))
    return out


def _role_in_arn(template: Template, raw_role: object) -> str:
    """The role of the template an ARN built with ``Fn::Sub`` names
    (``arn:aws:iam::${AWS::AccountId}:role/${Role}``), or ""."""
    arg = raw_role.get("Fn::Sub") if isinstance(raw_role, Mapping) and len(raw_role) == 1 else None
    if not isinstance(arg, str) or ":role/" not in arg:
        return ""
    name = arg.rsplit(":role/", 1)[1]
    if name.startswith("${") and name.endswith("}") and name.count("${") == 1:
        return name[2:-1]
    return ""


def role_policies(template: Template, raw_role: object, conditional: bool) -> tuple[Policy, ...]:
    """The policies of the role `raw_role` points at, when it is a role of the template
    (both roles, conditional, when an ``Fn::If`` picks one)."""
    if isinstance(raw_role, Mapping) and len(raw_role) == 1 and "Fn::If" in raw_role:
        args = raw_role["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            return role_policies(template, args[1], True) + role_policies(template, args[2], True)
    role = template.resources.get(referenced(raw_role) or _role_in_arn(template, raw_role))
    if role is None or role.type != "AWS::IAM::Role":
        return ()
    cond = conditional or role.conditional
    policies: list[Policy] = []
    inline = role.properties.get("Policies")
    for item, branch, line in _items(inline, role.properties.line_of("Policies")):
        if not isinstance(item, Mapping):
            continue
        document = plain(item.get("PolicyDocument"), cond or branch)
        name = item.get("PolicyName")
        statements = parse_policy(document, line, conditional=cond or branch)
        policies.append(
            Policy(
                str(name) if isinstance(name, str) else role.name,
                line,
                statements,
                conditional=cond or branch,
            )
        )
    arns = role.properties.get("ManagedPolicyArns")
    for item, branch, line in _items(arns, role.properties.line_of("ManagedPolicyArns")):
        policies.append(managed_policy(item, line, cond or branch, template))
    policies.extend(_attached(template, role.name, cond))
    return tuple(policies)


def _expanded(template: Template, name: str, params: object, line: int, cond: bool) -> Policy:
    """A SAM policy template with its parameters, expanded into statements."""
    found = find_template(name)
    if found is None:
        why = Unresolved(name, "not a SAM policy template this version of SAM knows")
        return Policy(name, line, template=name, conditional=cond, unresolved=(why,))
    declared = found.get("Parameters")
    given = params if isinstance(params, Mapping) else {}
    bindings: dict[str, object] = {}
    for param in declared if isinstance(declared, Mapping) else {}:
        missing = Unresolved(f"{name}.{param}", "a policy template parameter not given")
        bindings[str(param)] = given.get(param, missing)
    definition = template.resolver.bound(bindings).resolve(found.get("Definition"))
    statements = parse_policy(plain(definition, cond), line, conditional=cond)
    return Policy(name, line, statements, template=name, conditional=cond)


def sam_policies(template: Template, function: Resource) -> tuple[Policy, ...]:
    """The policies of the role SAM makes for a function from its ``Policies``."""
    props = function.properties
    policies: list[Policy] = []
    for item, branch, at in _items(props.get("Policies"), props.line_of("Policies")):
        cond = function.conditional or branch
        if isinstance(item, RMap) and "Statement" in item:
            statements = parse_policy(plain(item, cond), at, conditional=cond)
            policies.append(Policy(f"{function.name}Policy", at, statements, conditional=cond))
        elif isinstance(item, Mapping) and len(item) == 1:
            key, params = next(iter(item.items()))
            policies.append(_expanded(template, str(key), params, at, cond))
        else:
            policies.append(managed_policy(item, at, cond, template))
    return tuple(policies)
