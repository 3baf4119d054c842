"""AWS Lambda functions of a Terraform module, with what the module grants them.

``aws_lambda_function``: name, runtime, handler, ``environment.variables``, the role
and its policies (`policies.role_policies`), ``dead_letter_config`` or an
``aws_lambda_function_event_invoke_config`` on-failure destination, reserved
concurrency, ``kms_key_arn``, ``tracing_config``; its log group (``logging_config``
or the ``aws_cloudwatch_log_group`` named ``/aws/lambda/<name>``); who may invoke it
(``aws_lambda_permission``); its triggers (`aws_triggers`). A resource "refers to"
the function by reference (``aws_lambda_function.api.arn``) or by its name.
"""

from __future__ import annotations

from typing import Any

from donjon.scan.iac.model import Cloud, EnvVar, Function, LogGroup, Statement, Val, Where
from donjon.scan.iac.statements import parse_statement
from donjon.scan.iac.terraform.aws_triggers import FunctionRef, triggers_of
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.policies import role_address, role_policies
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import Ref, env_vars, to_int, to_str

__all__ = ["lambda_functions", "log_groups"]


def log_groups(module: Module) -> dict[str, LogGroup]:
    """Every ``aws_cloudwatch_log_group``, by its name as evaluated (or its address)."""
    found: dict[str, LogGroup] = {}
    for address, block in module.of_type("aws_cloudwatch_log_group"):
        name, _ = module.attr(block, "name")
        retention, r_line = module.attr(block, "retention_in_days")
        kms, k_line = module.attr(block, "kms_key_id")
        group = LogGroup(
            Where(block.path, block.line, address), to_int(retention, r_line), to_str(kms, k_line)
        )
        found[name if isinstance(name, str) else address] = group
        found[address] = group
    return found


def _environment(module: Module, block: Block) -> tuple[EnvVar, ...]:
    return env_vars(*module.attr(block.first("environment"), "variables"))


def _dead_letter(module: Module, block: Block, ref: FunctionRef) -> Val[str]:
    target, line = module.attr(block.first("dead_letter_config"), "target_arn")
    if line:
        return to_str(target, line)
    for _, config in module.of_type("aws_lambda_function_event_invoke_config"):
        if not ref.named_by(module.attr(config, "function_name")[0]):
            continue
        destination = config.first("destination_config")
        on_failure = destination.first("on_failure") if destination else None
        target, line = module.attr(on_failure, "destination")
        if line:
            return to_str(target, line)
    return Val()


def _permission(module: Module, block: Block) -> Statement:
    principal, _ = module.attr(block, "principal")
    if isinstance(principal, str) and principal.endswith(".amazonaws.com"):
        principal = {"Service": principal}
    raw: dict[str, Any] = {
        "Effect": "Allow",
        "Action": module.attr(block, "action")[0] or "lambda:InvokeFunction",
        "Principal": principal,
    }
    conditions: dict[str, dict[str, Any]] = {}
    for name, operator, key in (
        ("source_arn", "ArnLike", "AWS:SourceArn"),
        ("source_account", "StringEquals", "AWS:SourceAccount"),
        ("principal_org_id", "StringEquals", "aws:PrincipalOrgID"),
        ("function_url_auth_type", "StringEquals", "lambda:FunctionUrlAuthType"),
    ):
        value, line = module.attr(block, name)
        if line:
            conditions.setdefault(operator, {})[key] = value
    if conditions:
        raw["Condition"] = conditions
    statement = parse_statement(raw, module.attr(block, "principal")[1] or block.line)
    return Statement(**{**statement.__dict__, "path": block.path})


def lambda_functions(module: Module) -> tuple[Function, ...]:
    groups = log_groups(module)
    functions: list[Function] = []
    for address, block in module.of_type("aws_lambda_function"):
        where = Where(block.path, block.line, address)
        name, n_line = module.attr(block, "function_name")
        ref = FunctionRef(address, name)
        role, r_line = module.attr(block, "role")
        role_at = role_address(module, role)
        tracing, t_line = module.attr(block.first("tracing_config"), "mode")
        logging = block.first("logging_config")
        group_name, _ = module.attr(logging, "log_group")
        if isinstance(group_name, Ref):
            group_name = group_name.address
        elif not isinstance(group_name, str):
            group_name = f"/aws/lambda/{name}" if isinstance(name, str) else None
        functions.append(
            Function(
                where,
                Cloud.AWS,
                name=to_str(name, n_line),
                runtime=to_str(*module.attr(block, "runtime")),
                handler=to_str(*module.attr(block, "handler")),
                environment=_environment(module, block),
                role=to_str(role, r_line),
                policies=role_policies(module, role_at) if role_at else (),
                invoke_policy=tuple(
                    _permission(module, p)
                    for _, p in module.of_type("aws_lambda_permission")
                    if ref.named_by(module.attr(p, "function_name")[0])
                ),
                triggers=triggers_of(module, ref),
                dead_letter=_dead_letter(module, block, ref),
                reserved_concurrency=to_int(*module.attr(block, "reserved_concurrent_executions")),
                kms_key=to_str(*module.attr(block, "kms_key_arn")),
                tracing=to_str(tracing, t_line),
                log_group=groups.get(group_name) if group_name else None,
            )
        )
    return tuple(functions)
