"""DJ-IAC-026..030: what keeps a function's failures, cost and history in view.

Events lost after asynchronous retries (no dead-letter queue or on-failure
destination), public functions without a concurrency cap, tracing off, API access logs
off, logs kept forever. These are AWS Lambda settings; Azure and Google functions are
not checked here (their retry, scale and log settings live elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator

from donjon.scan.iac.judge import read, read_missing
from donjon.scan.iac.model import App, Cloud, Function, LogGroup, Where
from donjon.scan.iac.public import ROUTES, public_statements
from donjon.scan.model import Confidence, Cwe, Finding, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule

__all__ = ["CHECKS", "RULES"]

_IAC = FindingKind.IAC


def _rule(rule_id: str, name: str, severity: Severity, cwe: Cwe, sas: SasCategory,
          description: str, fix: str) -> Rule:  # fmt: skip
    return Rule(rule_id, name, _IAC, severity, cwe, sas, description, fix)


NO_DEAD_LETTER = _rule(
    "DJ-IAC-026", "async-without-dead-letter", Severity.MEDIUM, Cwe.UNCHECKED_ERROR_CONDITION,
    SasCategory.SAS_10,
    "A function invoked asynchronously (S3, SNS, EventBridge, schedules) has no dead-letter "
    "queue and no on-failure destination: after Lambda's retries the event is dropped, "
    "and with it any trace of the failure or of an attack that caused it.",
    "Add a DeadLetterQueue (dead_letter_config) or an EventInvokeConfig "
    "DestinationConfig.OnFailure (aws_lambda_function_event_invoke_config), and alarm on it.",
)  # fmt: skip
NO_CONCURRENCY_CAP = _rule(
    "DJ-IAC-027", "public-function-without-concurrency-limit", Severity.LOW,
    Cwe.ALLOCATION_WITHOUT_LIMITS, SasCategory.SAS_8,
    "A function anyone can call (an unauthenticated route or a public invoke permission) "
    "has no reserved concurrency: a flood scales it to the account's limit, billing every "
    "invocation and starving the account's other functions (denial of wallet).",
    "Set ReservedConcurrentExecutions (reserved_concurrent_executions) to what the function "
    "needs, and throttle the API stage.",
)  # fmt: skip
TRACING_OFF = _rule(
    "DJ-IAC-028", "tracing-disabled", Severity.LOW, Cwe.INSUFFICIENT_LOGGING,
    SasCategory.SAS_5,
    "A Lambda function without active X-Ray tracing (Tracing absent or PassThrough): "
    "requests cannot be followed across services when investigating an incident.",
    "Set Tracing: Active (tracing_config { mode = \"Active\" }; SAM Globals for every "
    "function).",
)  # fmt: skip
API_LOGS_OFF = _rule(
    "DJ-IAC-029", "api-access-logs-disabled", Severity.LOW, Cwe.INSUFFICIENT_LOGGING,
    SasCategory.SAS_5,
    "An API Gateway stage without access logging: who called what, from where, is not "
    "recorded.",
    "Set AccessLogSetting (SAM AccessLogSettings; access_log_settings in Terraform) with a "
    "destination log group and a format carrying requestId, sourceIp and status.",
)  # fmt: skip
LOG_RETENTION = _rule(
    "DJ-IAC-030", "log-retention-missing", Severity.LOW, Cwe.INSUFFICIENT_LOGGING,
    SasCategory.SAS_5,
    "Logs kept forever: a log group without RetentionInDays (or a function with no log "
    "group declared, which Lambda then creates without one). Logs holding event data "
    "pile up unbounded, and no retention decision was made.",
    "Declare the log group (/aws/lambda/<name>, or LoggingConfig.LogGroup) with "
    "RetentionInDays (retention_in_days) set to what your records policy needs, and a "
    "KmsKeyId.",
)  # fmt: skip

RULES: tuple[Rule, ...] = (NO_DEAD_LETTER, NO_CONCURRENCY_CAP, TRACING_OFF, API_LOGS_OFF,
                           LOG_RETENTION)  # fmt: skip


def _aws(app: App) -> Iterator[Function]:
    return (f for f in app.functions if f.cloud is Cloud.AWS)


def missing_dead_letters(app: App) -> Iterator[Finding]:
    """DJ-IAC-026: asynchronous triggers with nowhere for failed events to go."""
    for function in _aws(app):
        sources = sorted({t.kind.value for t in function.triggers if t.asynchronous})
        if not sources:
            continue
        target = function.dead_letter
        if target.present and not target.conditional:  # an unresolved target is a target
            continue
        may = "may have" if target.present else "has"
        yield NO_DEAD_LETTER.finding(
            function.where.location(target.line),
            f"{function.where.resource} ({', '.join(sources)} events) {may} no dead-letter "
            "queue or on-failure destination",
            confidence=Confidence.MEDIUM if target.present else Confidence.HIGH,
        )


def _public_reason(function: Function) -> tuple[str, Confidence] | None:
    for trigger in function.triggers:
        if trigger.kind not in ROUTES:
            continue
        reading = read(trigger.auth, lambda auth: auth.lower() == "none")
        if reading is not None and not reading.unresolved:
            return "an unauthenticated route", reading.confidence
    for _, sure, _why in public_statements(function.invoke_policy):
        if sure is not Confidence.LOW:
            return "a public invoke permission", sure
    return None


def missing_concurrency_caps(app: App) -> Iterator[Finding]:
    """DJ-IAC-027: publicly callable functions without reserved concurrency."""
    for function in _aws(app):
        reason = _public_reason(function)
        cap = function.reserved_concurrency
        if reason is None or (cap.present and not cap.conditional):
            continue
        why, confidence = reason
        may = "may have" if cap.present else "has"
        yield NO_CONCURRENCY_CAP.finding(
            function.where.location(cap.line),
            f"{function.where.resource} is callable by anyone ({why}) and {may} no reserved "
            "concurrency",
            confidence=min(confidence, Confidence.MEDIUM if cap.present else Confidence.HIGH),
        )


def tracing_disabled(app: App) -> Iterator[Finding]:
    """DJ-IAC-028: Lambda functions whose tracing is not Active."""
    for function in _aws(app):
        reading = read_missing(function.tracing, lambda mode: mode.lower() == "active")
        if reading is None:
            continue
        state = f"is {reading.value}" if reading.value else "is not set"
        yield TRACING_OFF.finding(
            function.where.location(function.tracing.line),
            f"{function.where.resource} {reading.may}has no active tracing (Tracing {state})"
            f"{reading.note()}",
            confidence=reading.confidence,
        )


def api_access_logs_disabled(app: App) -> Iterator[Finding]:
    """DJ-IAC-029: APIs without access logs."""
    for api in app.apis:
        reading = read_missing(api.access_log, bool)
        if reading is None:
            continue
        yield API_LOGS_OFF.finding(
            api.where.location(api.access_log.line),
            f"API {api.where.resource} {reading.may}has no access logging{reading.note()}",
            confidence=reading.confidence,
        )


def _retention(group: LogGroup) -> Finding | None:
    reading = read_missing(group.retention_days, lambda days: days > 0)
    if reading is None:
        return None
    return LOG_RETENTION.finding(
        group.where.location(group.retention_days.line),
        f"log group {group.where.resource} {reading.may}keeps logs forever (no retention)"
        f"{reading.note()}",
        confidence=reading.confidence,
    )


def missing_log_retention(app: App) -> Iterator[Finding]:
    """DJ-IAC-030: log groups without retention, and functions with no log group at all."""
    groups: dict[Where, LogGroup] = {g.where: g for g in app.log_groups}
    for function in _aws(app):
        group = function.log_group
        # None, or the group Lambda makes itself, written by the loader at the function.
        implicit = group is None or (
            group.where == function.where
            and not group.retention_days.present
            and not group.kms_key.present
        )
        if implicit:
            yield LOG_RETENTION.finding(
                function.where.location(),
                f"{function.where.resource} declares no log group: Lambda creates "
                f"/aws/lambda/<name> keeping logs forever",
                confidence=Confidence.MEDIUM,
            )
        elif group is not None:
            groups.setdefault(group.where, group)
    for group in groups.values():
        finding = _retention(group)
        if finding is not None:
            yield finding


CHECKS = (
    missing_dead_letters,
    missing_concurrency_caps,
    tracing_disabled,
    api_access_logs_disabled,
    missing_log_retention,
)
