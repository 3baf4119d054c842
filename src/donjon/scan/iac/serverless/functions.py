"""A Serverless service's functions, with the provider's defaults applied.

A function's own value wins over the provider's: ``runtime``, ``kmsKeyArn``,
``tracing`` (``provider.tracing.lambda``: ``true`` is ``Active``),
``logRetentionInDays``; ``environment`` is merged key by key (the function's key
wins). Each value keeps the line it is written on, the provider's when inherited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from donjon.scan.iac.cfn.props import as_bool, as_int, as_str, child
from donjon.scan.iac.cfn.values import RMap, options, val
from donjon.scan.iac.model import Cloud, EnvVar, Function, LogGroup, Trigger, Val, Where
from donjon.scan.iac.serverless.document import Document
from donjon.scan.iac.serverless.events import build_triggers, url_trigger
from donjon.scan.iac.serverless.iam import function_role

__all__ = ["build_functions"]

T = TypeVar("T")


def _own_or_provider(
    function: RMap,
    provider: RMap,
    key: str,
    convert: Callable[[object], T | None],
    *provider_path: str,
) -> Val[T]:
    """The function's value of `key`, else the provider's (at `provider_path`)."""
    if key in function:
        return val(function[key], function.line_of(key), convert, what=key)
    value, line = child(provider, *(provider_path or (key,)))
    return val(value, line, convert, what=key)


def _tracing(value: object) -> str | None:
    flag = as_bool(value)
    if flag is not None:
        return "Active" if flag else "PassThrough"
    return as_str(value)


def _environment(function: RMap, provider: RMap) -> tuple[EnvVar, ...]:
    merged: dict[str, EnvVar] = {}
    for holder in (provider, function):
        env = holder.get("environment")
        if not isinstance(env, RMap):
            continue
        for name, value in env.items():
            merged[name] = EnvVar(name, val(value, env.line_of(name), as_str, what=name))
    return tuple(merged.values())


def _dead_letter(function: RMap) -> Val[str]:
    target, line = child(function, "destinations", "onFailure")
    if target is not None:
        if isinstance(target, Mapping) and "arn" in target:
            target = target["arn"]
        return val(target, line, as_str, what="destinations.onFailure")
    if "onError" in function:
        return val(function["onError"], function.line_of("onError"), as_str, what="onError")
    return Val()


def _log_group(function: RMap, provider: RMap, where: Where) -> LogGroup | None:
    if as_bool(function.get("disableLogs")) is True:
        return None
    # Serverless declares /aws/lambda/<name> for every function: its retention is the
    # function's or the provider's; no key can be set on it (it sits at the function).
    retention = _own_or_provider(function, provider, "logRetentionInDays", as_int)
    return LogGroup(where, retention_days=retention)


def _name(doc: Document, key: str, line: int) -> Val[str]:
    """Serverless's default name, ``<service>-<stage>-<key>``; the stage is ``provider.stage``
    or ``dev`` unless ``--stage`` says otherwise (conditional)."""
    service = doc.root.get("service")
    written = doc.section("provider").get("stage", "dev")
    stage = next((o for o, _ in options(written)), written)  # ${opt:stage, 'dev'}: dev
    if not isinstance(service, str) or not isinstance(stage, str):
        return Val.unknown(f"{service}-{stage}-{key}", "the service or stage is not resolved", line)
    return Val.of(f"{service}-{stage}-{key}", line, conditional=True)


def _function(doc: Document, key: str, body: RMap, line: int) -> Function:
    provider = doc.section("provider")
    where = Where(doc.path, line, key)
    authorizers, _ = child(provider, "httpApi", "authorizers")
    triggers: list[Trigger] = list(
        build_triggers(
            body.get("events"), where, authorizers if isinstance(authorizers, RMap) else RMap()
        )
    )
    url = url_trigger(body.get("url"), body.line_of("url"), where)
    if url is not None:
        triggers.append(url)
    role, policies = function_role(doc, body, line)
    name = (
        val(body["name"], body.line_of("name"), as_str) if "name" in body else _name(doc, key, line)
    )
    # A container image function has no runtime: the provider's does not apply to it.
    runtime = Val[str]() if "image" in body else _own_or_provider(body, provider, "runtime", as_str)
    return Function(
        where,
        Cloud.AWS,
        name=name,
        runtime=runtime,
        handler=val(body.get("handler"), body.line_of("handler"), as_str, what="handler"),
        environment=_environment(body, provider),
        role=role,
        policies=policies,
        triggers=tuple(triggers),
        dead_letter=_dead_letter(body),
        reserved_concurrency=val(
            body.get("reservedConcurrency"), body.line_of("reservedConcurrency"), as_int
        ),
        kms_key=_own_or_provider(body, provider, "kmsKeyArn", as_str),
        tracing=_own_or_provider(body, provider, "tracing", _tracing, "tracing", "lambda"),
        log_group=_log_group(body, provider, where),
    )


def build_functions(doc: Document) -> tuple[Function, ...]:
    functions = doc.section("functions")
    return tuple(
        _function(doc, key, body, functions.line_of(key))
        for key, body in functions.items()
        if isinstance(body, RMap)
    )
