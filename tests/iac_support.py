"""Hand-built IaC model values for the DJ-IAC rule tests: one clean function, bucket,
API or pool per call, changed by keyword where a test needs it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from donjon.scan.iac.model import (
    App,
    Bucket,
    Cloud,
    Function,
    HttpApi,
    LogGroup,
    Queue,
    TemplateKind,
    Trigger,
    TriggerKind,
    UserPool,
    Val,
    Where,
)
from donjon.scan.model import Confidence, Finding

__all__ = [
    "api",
    "app",
    "bucket",
    "function",
    "graded",
    "log_group",
    "pool",
    "queue",
    "route",
    "run",
    "where",
]

PATH = "template.yaml"


def where(resource: str, line: int = 1) -> Where:
    return Where(PATH, line, resource)


def log_group(name: str = "FnLogs", line: int = 40, **kw: Any) -> LogGroup:
    values: dict[str, Any] = {"retention_days": Val.of(30, line + 1), "kms_key": Val.of("k", 42)}
    values.update(kw)
    return LogGroup(where(name, line), **values)


def function(name: str = "Fn", line: int = 10, **kw: Any) -> Function:
    """A Lambda function that trips no DJ-IAC rule until a keyword changes it."""
    values: dict[str, Any] = {
        "runtime": Val.of("python3.13", line + 1),
        "tracing": Val.of("Active", line + 2),
        "log_group": log_group(f"{name}Logs"),
    }
    cloud = kw.pop("cloud", Cloud.AWS)
    values.update(kw)
    return Function(where(name, line), cloud, **values)


def route(kind: TriggerKind = TriggerKind.HTTP_API, line: int = 20, **kw: Any) -> Trigger:
    values: dict[str, Any] = {"auth": Val.of("jwt", line), "method": "get", "path": "/items"}
    values.update(kw)
    return Trigger(kind, where("Fn", line), **values)


def bucket(name: str = "Data", line: int = 50, **kw: Any) -> Bucket:
    values: dict[str, Any] = {
        "acl": Val.of("private", line + 1),
        "public_access_blocked": Val.of(True, line + 2),
        "encryption": Val.of("kms", line + 3),
    }
    cloud = kw.pop("cloud", Cloud.AWS)
    values.update(kw)
    return Bucket(where(name, line), cloud, **values)


def queue(name: str = "Jobs", kind: str = "sqs", line: int = 60, **kw: Any) -> Queue:
    values: dict[str, Any] = {"encryption": Val.of("kms", line + 1)}
    values.update(kw)
    return Queue(where(name, line), Cloud.AWS, kind, **values)


def api(name: str = "Api", line: int = 70, **kw: Any) -> HttpApi:
    values: dict[str, Any] = {"access_log": Val.of(True, line + 1)}
    kind = kw.pop("kind", TriggerKind.HTTP_API)
    values.update(kw)
    return HttpApi(where(name, line), kind, **values)


def pool(name: str = "Users", kind: str = "user-pool", line: int = 80, **kw: Any) -> UserPool:
    values: dict[str, Any] = {
        "password_min_length": Val.of(14, line + 1),
        "mfa": Val.of("ON", line + 2),
    }
    values.update(kw)
    return UserPool(where(name, line), kind, **values)


def app(**kw: Any) -> App:
    return App(PATH, TemplateKind.SAM, **kw)


Check = Callable[[App], Iterable[Finding]]


def run(check: Check, built: App, rule_id: str | None = None) -> list[Finding]:
    """The findings of `check` over `built` (only `rule_id`'s when given)."""
    return [f for f in check(built) if rule_id is None or f.rule_id == rule_id]


def graded(findings: Iterable[Finding]) -> list[tuple[int, Confidence]]:
    """Each finding's line and confidence, in order."""
    return [(f.location.line, f.confidence) for f in findings]
