"""DJ-IAC-020..025: runtimes past their support, secrets written in the template, and
what is stored without encryption or without a customer key.

The runtime rule is the one check that depends on the day: `runtime_check(today)` makes
it for a given date (tests pass one), `end_of_life_runtimes` checks against the scan's
own day.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime

from donjon.scan.iac.judge import read, read_missing
from donjon.scan.iac.model import App, Cloud, Function, Where
from donjon.scan.iac.runtimes import Stage, runtime_table
from donjon.scan.iac.template_secrets import find_secret, is_secret_name
from donjon.scan.model import Confidence, Cwe, Finding, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule

__all__ = [
    "CHECKS",
    "RULES",
    "STALE_DAYS",
    "WARN_DAYS",
    "runtime_check",
    "runtime_data_notes",
    "scan_day",
]

_IAC = FindingKind.IAC


def _rule(rule_id: str, name: str, severity: Severity, cwe: Cwe, sas: SasCategory,
          description: str, fix: str) -> Rule:  # fmt: skip
    return Rule(rule_id, name, _IAC, severity, cwe, sas, description, fix)


OLD_RUNTIME = _rule(
    "DJ-IAC-020", "end-of-life-runtime", Severity.MEDIUM, Cwe.UNMAINTAINED_COMPONENT,
    SasCategory.SAS_6,
    "A function runs on a runtime its cloud no longer patches (deprecated: medium), no "
    "longer lets you create (create-blocked) or update (update-blocked: high), or will "
    "stop supporting within 90 days (low); dates from a dated table of the AWS Lambda, "
    "Azure Functions and Google Cloud Functions runtime-support schedules.",
    "Move the function to a supported runtime of its language (python3.13, nodejs22.x...) "
    "and test it there; the cloud's own deprecation notices give the dates.",
)  # fmt: skip
HARD_CODED_SECRET = _rule(
    "DJ-IAC-021", "hard-coded-secret-in-template", Severity.HIGH, Cwe.HARD_CODED_CREDENTIALS,
    SasCategory.SAS_7,
    "A secret written in the template: a function environment variable or a template "
    "value named like a secret holding a literal, or a known credential format anywhere. "
    "Everyone who reads the template, its deploy logs or the function's configuration "
    "has it.",
    "Keep it in a secrets store and pass a reference ({{resolve:secretsmanager:...}}, "
    "${ssm:...}, a NoEcho parameter, a Key Vault reference); rotate the one written here.",
)  # fmt: skip
ENV_WITHOUT_KMS = _rule(
    "DJ-IAC-022", "secret-environment-without-kms", Severity.LOW, Cwe.MISSING_ENCRYPTION,
    SasCategory.SAS_7,
    "A Lambda function whose environment holds at least one variable named like a secret "
    "has no customer KMS key: anyone allowed to read the function's configuration reads "
    "the values in clear (the default AWS-managed key decrypts for them).",
    "Set KmsKeyArn (kms_key_arn) to a customer key whose policy names who may decrypt, or "
    "better, read the secret at run time from Secrets Manager or Parameter Store.",
)  # fmt: skip
NO_CUSTOMER_KEY = _rule(
    "DJ-IAC-023", "storage-without-customer-key", Severity.LOW, Cwe.MISSING_ENCRYPTION,
    SasCategory.SAS_3,
    "A bucket, queue or topic encrypted only with the provider's own key (S3 SSE-S3, "
    "SSE-SQS): whoever is granted read on the resource reads the data; a customer key "
    "adds its own key policy as a second gate.",
    "Encrypt with a customer-managed KMS key (SSEAlgorithm aws:kms with KMSMasterKeyID; "
    "KmsMasterKeyId for SQS and SNS) whose policy names the readers.",
)  # fmt: skip
UNENCRYPTED = _rule(
    "DJ-IAC-024", "storage-not-encrypted", Severity.MEDIUM, Cwe.MISSING_ENCRYPTION,
    SasCategory.SAS_3,
    "A bucket, queue or topic whose data is stored without encryption at rest (an SNS "
    "topic without KmsMasterKeyId; an SQS queue with SqsManagedSseEnabled false and no "
    "key).",
    "Set KmsMasterKeyId (kms_master_key_id) to a KMS key, or SqsManagedSseEnabled: true "
    "for SQS; buckets: default encryption with aws:kms.",
)  # fmt: skip
LOGS_WITHOUT_KMS = _rule(
    "DJ-IAC-025", "log-group-without-kms", Severity.LOW, Cwe.MISSING_ENCRYPTION,
    SasCategory.SAS_5,
    "A log group without a customer KMS key: logs often carry event data and tokens, and "
    "everyone with logs:GetLogEvents reads them.",
    "Set KmsKeyId (kms_key_id) on the log group to a customer key whose policy allows the "
    "logs service of the region.",
)  # fmt: skip

RULES: tuple[Rule, ...] = (
    OLD_RUNTIME, HARD_CODED_SECRET, ENV_WITHOUT_KMS, NO_CUSTOMER_KEY, UNENCRYPTED,
    LOGS_WITHOUT_KMS,
)  # fmt: skip

#: Days before a deprecation date from which a runtime is reported (low).
WARN_DAYS = 90
#: Days after which the runtime table is called old in the findings it makes.
STALE_DAYS = 180
_CLOUD_NAMES = {Cloud.AWS: "AWS Lambda", Cloud.AZURE: "Azure Functions",
                Cloud.GCP: "Google Cloud Functions"}  # fmt: skip
_SEVERITY = {
    Stage.ENDING: Severity.LOW,
    Stage.DEPRECATED: Severity.MEDIUM,
    Stage.CREATE_BLOCKED: Severity.MEDIUM,
    Stage.UPDATE_BLOCKED: Severity.HIGH,
}


def _stage_text(stage: Stage, runtime: str, dates: dict[str, date | None], today: date) -> str:
    deprecated = dates["deprecated"]
    if stage is Stage.ENDING and deprecated is not None:
        return (
            f"runtime {runtime} loses support on {deprecated} (in {(deprecated - today).days} days)"
        )
    parts = [f"runtime {runtime} is deprecated since {deprecated}: no more security patches"]
    if dates["create_blocked"] and today >= dates["create_blocked"]:
        parts.append(f"new functions refused since {dates['create_blocked']}")
    if dates["update_blocked"]:
        tense = "since" if today >= dates["update_blocked"] else "from"
        parts.append(f"updates refused {tense} {dates['update_blocked']}")
    return "; ".join(parts)


def _runtime_findings(function: Function, today: date) -> Iterator[Finding]:
    table = runtime_table()
    runtime = function.runtime
    age = table.age_days(today)
    stale = f" (runtime dates as of {table.as_of}, {age} days old)" if age > STALE_DAYS else ""
    where = function.where.location(runtime.line)
    hedge = len(runtime.known) > 1 or runtime.conditional or bool(runtime.unresolved)
    for name in dict.fromkeys(runtime.known):
        life = table.lifecycle(function.cloud, name)
        stage = life.stage(today, WARN_DAYS) if life else Stage.SUPPORTED
        if life is None or stage is Stage.SUPPORTED:
            continue
        dates = {"deprecated": life.deprecated, "create_blocked": life.create_blocked,
                 "update_blocked": life.update_blocked}  # fmt: skip
        may = "may run on" if hedge else "runs on"
        yield OLD_RUNTIME.finding(
            where,
            f"{function.where.resource} {may} {_CLOUD_NAMES[function.cloud]} "
            f"{_stage_text(stage, name, dates, today)}{stale}",
            confidence=Confidence.MEDIUM if hedge else Confidence.HIGH,
            severity=_SEVERITY[stage],
        )
    if runtime.unresolved:
        text = "; ".join(str(u) for u in runtime.unresolved)
        yield OLD_RUNTIME.finding(
            where,
            f"{function.where.resource}'s runtime is unresolved ({text}): its support "
            "dates cannot be checked",
            confidence=Confidence.LOW,
            severity=Severity.LOW,
        )


def runtime_check(today: date) -> Callable[[App], Iterator[Finding]]:
    """DJ-IAC-020 as of `today`."""

    def end_of_life_runtimes(app: App) -> Iterator[Finding]:
        for function in app.functions:
            yield from _runtime_findings(function, today)

    return end_of_life_runtimes


def scan_day() -> date:
    """The day runtimes are checked against: today, in UTC."""
    return datetime.now(UTC).date()


def end_of_life_runtimes(app: App) -> Iterator[Finding]:
    """DJ-IAC-020 as of the day of the scan."""
    return runtime_check(scan_day())(app)


def runtime_data_notes(apps: Sequence[App]) -> tuple[str, ...]:
    """A scan note when functions were checked against a runtime table older than
    `STALE_DAYS`: deprecations announced since are unknown to it."""
    if not any(f.runtime.present for app in apps for f in app.functions):
        return ()
    table = runtime_table()
    age = table.age_days(scan_day())
    if age <= STALE_DAYS:
        return ()
    return (
        f"IaC runtime support dates are as of {table.as_of} ({age} days old): runtimes "
        "deprecated since are not reported; update donjon",
    )


def hard_coded_secrets(app: App) -> Iterator[Finding]:
    """DJ-IAC-021: secrets in function environments and in the template's literals.

    An unresolved value is not reported here: it is, by definition, not written in the
    template (a parameter without default, ``${ssm:...}``, a dynamic reference)."""
    seen: set[tuple[str, int, str]] = set()
    for function in app.functions:
        for env in function.environment:
            for value in env.value.known:
                hit = find_secret(env.name, value)
                key = (function.where.path, env.value.line, value)
                if hit is None or key in seen:
                    continue
                seen.add(key)
                may = "may be set to" if env.value.conditional else "holds"
                yield HARD_CODED_SECRET.finding(
                    function.where.location(env.value.line),
                    f"environment variable {env.name} of {function.where.resource} {may} "
                    f"{hit.kind}: {hit.masked}",
                    confidence=_sample_graded(function.where.path, hit.confidence),
                )
    for where, path, value in app.literals:
        name = _literal_name(where, path)
        hit = find_secret(name, value)
        spot = (where.path, where.line, value)
        if hit is None or spot in seen:
            continue
        seen.add(spot)
        yield HARD_CODED_SECRET.finding(
            where.location(),
            f"{name if name == where.resource else f'{name} of {where.resource}'} holds "
            f"{hit.kind}: {hit.masked}",
            confidence=_sample_graded(where.path, hit.confidence),
        )


def _literal_name(where: Where, key: str) -> str:
    """The name a literal is written under: a property path's last key
    (``Properties.MasterUserPassword``), a parameter's own name for its ``Default``."""
    last = re.sub(r"\[\d+\]$", "", key).rsplit(".", 1)[-1]
    return where.resource if last in {"", "Default", "default"} else last


def _sample_graded(path: str, confidence: Confidence) -> Confidence:
    """Templates under tests/, examples/... hold made-up secrets: graded low, as the
    secrets scanner grades them."""
    from donjon.scan.scanners.secret_context import is_sample_path

    return Confidence.LOW if is_sample_path(path) else confidence


def environments_without_kms(app: App) -> Iterator[Finding]:
    """DJ-IAC-022: a Lambda environment with secret-named variables and no customer key."""
    for function in app.functions:
        if function.cloud is not Cloud.AWS:
            continue
        names = [e.name for e in function.environment if e.value.present and is_secret_name(e.name)]
        key = function.kms_key
        if not names or (key.present and not key.conditional):
            continue
        may = "may have" if key.present else "has"
        yield ENV_WITHOUT_KMS.finding(
            function.where.location(key.line),
            f"{function.where.resource} {may} no KMS key for an environment holding "
            f"{', '.join(names)}",
            confidence=Confidence.MEDIUM if key.present else Confidence.HIGH,
        )


def unencrypted_storage(app: App) -> Iterator[Finding]:
    """DJ-IAC-023 and 024: buckets, queues and topics encrypted with the provider's key
    only (``managed``), or not at all (``none``). S3 has encrypted every object since
    January 2023 and SQS every new queue since 2022: a loader writes ``managed`` for
    them when the template says nothing, never ``none``."""
    holders = [("bucket", b.where, b.encryption, b.kms_key) for b in app.buckets]
    holders += [(q.kind or "queue", q.where, q.encryption, q.kms_key) for q in app.queues]
    for kind, where, encryption, key in holders:
        reading = read(encryption, lambda mode: mode.lower() == "none")
        # A key written as an unresolved expression is still a key: encrypted, by whom unknown.
        if reading is not None and not (reading.unresolved and key.present):
            yield UNENCRYPTED.finding(
                where.location(encryption.line),
                f"{kind} {where.resource} {reading.verb} stored without encryption{reading.note()}",
                confidence=reading.confidence,
            )
            continue
        managed = read(encryption, lambda mode: mode.lower() == "managed")
        if managed is not None and not managed.unresolved:
            yield NO_CUSTOMER_KEY.finding(
                where.location(encryption.line),
                f"{kind} {where.resource} {managed.verb} encrypted with the provider's key "
                "only, no customer KMS key",
                confidence=managed.confidence,
            )


def log_groups_without_kms(app: App) -> Iterator[Finding]:
    """DJ-IAC-025: declared log groups without a KMS key (an unresolved key is a key)."""
    groups = {g.where: g for g in app.log_groups}
    for function in app.functions:
        group = function.log_group
        # The group Lambda makes itself (the loader writes it at the function): there is no
        # key to set on it until it is declared, which DJ-IAC-030 asks for.
        if group is not None and group.where != function.where:
            groups.setdefault(group.where, group)
    for group in groups.values():
        reading = read_missing(group.kms_key)
        if reading is None or reading.unresolved:
            continue
        yield LOGS_WITHOUT_KMS.finding(
            group.where.location(group.kms_key.line),
            f"log group {group.where.resource} {reading.may}has no KMS key",
            confidence=reading.confidence,
        )


CHECKS = (
    end_of_life_runtimes,
    hard_coded_secrets,
    environments_without_kms,
    unencrypted_storage,
    log_groups_without_kms,
)
