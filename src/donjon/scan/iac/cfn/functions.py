"""Functions of a template: ``AWS::Serverless::Function`` (SAM ``Globals`` merged) and
``AWS::Lambda::Function``, with what other resources of the template add to them
(roles and policies, permissions, event invoke configs, URLs, log groups, API
methods and routes)."""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.events import api_triggers, event_triggers, url_triggers
from donjon.scan.iac.cfn.policies import role_policies, sam_policies
from donjon.scan.iac.cfn.props import as_int, as_str, child, prop, referenced
from donjon.scan.iac.cfn.sources import source_triggers
from donjon.scan.iac.cfn.template import Resource, Template
from donjon.scan.iac.cfn.values import Choice, RMap, options, plain, val
from donjon.scan.iac.model import (
    Cloud,
    EnvVar,
    Function,
    LogGroup,
    Statement,
    Trigger,
    TriggerKind,
    Unresolved,
    Val,
)
from donjon.scan.iac.statements import parse_statement

__all__ = ["build_functions"]

SAM_FUNCTION = "AWS::Serverless::Function"
FUNCTION_TYPES = (SAM_FUNCTION, "AWS::Lambda::Function")


def _targets(template: Template, resource: Resource, key: str, function: Resource) -> bool:
    """`resource`'s property `key` names `function` (a reference, or its name)."""
    raw = resource.raw.get(key)
    if referenced(raw) == function.name:
        return True
    name = function.properties.get("FunctionName")
    return isinstance(name, str) and resource.properties.get(key) == name


def _environment(function: Resource) -> tuple[EnvVar, ...]:
    variables, line = child(function.properties, "Environment", "Variables")
    out: list[EnvVar] = []
    for option, branch in options(variables):
        if isinstance(option, Unresolved):
            out.append(EnvVar("*", Val((), (option,), line, branch)))
        elif isinstance(option, RMap):
            cond = function.conditional or branch
            out.extend(
                EnvVar(
                    str(k), val(v, option.line_of(str(k)), as_str, conditional=cond, what=str(k))
                )
                for k, v in option.items()
            )
    return tuple(out)


def _dead_letter(template: Template, function: Resource) -> Val[str]:
    props = function.properties
    for path in (("DeadLetterQueue", "TargetArn"), ("DeadLetterConfig", "TargetArn")):
        found = prop(function, *path, convert=as_str)
        if found.present:
            return found
    sources = [(function, props.get("EventInvokeConfig"))]
    sources.extend(
        (config, config.properties)
        for config in template.of_type("AWS::Lambda::EventInvokeConfig")
        if _targets(template, config, "FunctionName", function)
    )
    for owner, config in sources:
        failure, line = child(config, "DestinationConfig", "OnFailure")
        if isinstance(failure, Mapping):
            destination, at = child(failure, "Destination")
            if destination is None and failure.get("Type") is not None:
                # SAM makes the queue or topic itself when only its type is given.
                return Val.of(
                    f"{failure.get('Type')} made by SAM", line, conditional=owner.conditional
                )
            return val(destination, at or line, as_str, conditional=owner.conditional)
    return Val()


def _permission(permission: Resource) -> Statement:
    """An ``AWS::Lambda::Permission`` as the resource-policy statement Lambda makes of it
    (its source, account, organisation and URL auth type as conditions)."""
    props = permission.properties
    principal = props.get("Principal")
    grouped: dict[str, list[object]] = {}
    for value, _ in options(principal):
        service = isinstance(value, str) and value.endswith(".amazonaws.com")
        grouped.setdefault("Service" if service else "AWS", []).append(value)
    conditions: dict[str, dict[str, object]] = {}
    for key, operator, condition_key in (
        ("SourceArn", "ArnLike", "AWS:SourceArn"),
        ("SourceAccount", "StringEquals", "AWS:SourceAccount"),
        ("PrincipalOrgID", "StringEquals", "aws:PrincipalOrgID"),
        ("FunctionUrlAuthType", "StringEquals", "lambda:FunctionUrlAuthType"),
    ):
        if key in props:
            conditions.setdefault(operator, {})[condition_key] = plain(props[key])
    conditional = permission.conditional or isinstance(principal, Choice)
    raw = RMap(props.line_of("Principal") or permission.where.line, conditional)
    raw.update(
        {
            "Effect": "Allow",
            "Action": plain(props.get("Action")),
            "Resource": plain(props.get("FunctionName")),
            "Principal": grouped or None,
            "Condition": conditions or None,
        }
    )
    return parse_statement(raw, permission.where.line)


def _log_group(function: Resource, groups: Mapping[str, LogGroup]) -> LogGroup:
    """The log group the function writes to; Lambda makes one when the template has
    none (kept forever, AWS's key): that is the effective value then. A group named in
    ``LoggingConfig`` but made elsewhere has unknown settings."""
    named, line = child(function.properties, "LoggingConfig", "LogGroup")
    name = function.properties.get("FunctionName")
    own = "/aws/lambda/" + (name if isinstance(name, str) else "${" + function.name + "}")
    for candidate in (named, own):
        if isinstance(candidate, str) and candidate in groups:
            return groups[candidate]
    if named is not None and named != own:
        shown = named.expression if isinstance(named, Unresolved) else str(named)
        outside = Unresolved(shown, "a log group made outside the template")
        return LogGroup(
            function.where.at(line),
            retention_days=Val((), (outside,), line),
            kms_key=Val((), (outside,), line),
        )
    return LogGroup(function.where)


def _function(
    template: Template,
    function: Resource,
    groups: Mapping[str, LogGroup],
    extra: dict[str, list[Trigger]],
) -> tuple[Function, set[TriggerKind]]:
    sam = function.type == SAM_FUNCTION
    role = prop(function, "Role", convert=as_str)
    if sam and not role.present:
        role = Val.of(
            "${" + function.name + "Role}", function.where.line, conditional=function.conditional
        )
        policies = sam_policies(template, function)
    else:
        policies = role_policies(template, function.raw.get("Role"), function.conditional)
    triggers, implicit = event_triggers(template, function) if sam else ((), set())
    tracing = prop(function, "Tracing", convert=as_str) if sam else Val()
    if not tracing.present:
        tracing = prop(function, "TracingConfig", "Mode", convert=as_str)
    permissions = [
        _permission(p)
        for p in template.of_type("AWS::Lambda::Permission")
        if _targets(template, p, "FunctionName", function)
    ]
    model = Function(
        function.where,
        Cloud.AWS,
        name=prop(function, "FunctionName", convert=as_str),
        runtime=prop(function, "Runtime", convert=as_str),
        handler=prop(function, "Handler", convert=as_str),
        environment=_environment(function),
        role=role,
        policies=policies,
        invoke_policy=tuple(permissions),
        triggers=(*triggers, *url_triggers(template, function), *extra.get(function.name, ())),
        dead_letter=_dead_letter(template, function),
        reserved_concurrency=prop(function, "ReservedConcurrentExecutions", convert=as_int),
        kms_key=prop(function, "KmsKeyArn", convert=as_str),
        tracing=tracing,
        log_group=_log_group(function, groups),
    )
    return model, implicit


def build_functions(
    template: Template, groups: Mapping[str, LogGroup]
) -> tuple[tuple[Function, ...], set[TriggerKind]]:
    """Every function of the template, and the implicit SAM APIs their events use."""
    extra = api_triggers(template)
    for name, found in source_triggers(template).items():
        extra.setdefault(name, []).extend(found)
    functions: list[Function] = []
    implicit: set[TriggerKind] = set()
    for resource in template.of_type(*FUNCTION_TYPES):
        model, used = _function(template, resource, groups, extra)
        functions.append(model)
        implicit |= used
    return tuple(functions), implicit
