"""DJ-IAC-001..005: over-privileged function roles, judged through the IAM action
catalog (`actions`), the role's Deny statements (`evaluate`), the managed policy table
(`managed`) and the escalation paths (`escalation`).

Grading, for every rule: a grant written under ``Fn::If`` "may" hold (confidence at
most medium); a grant narrowed by a ``Condition`` is reported one severity lower at
medium confidence; what cannot be seen (DJ-IAC-005) is low confidence. Findings point
at the statement's line (or the line naming the managed policy) and carry the
function's logical id or address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from donjon.scan.iac.iam.actions import AccessLevel, Action, catalog
from donjon.scan.iac.iam.escalation import PATHS, ROLE_HANDOVER, key_actions
from donjon.scan.iac.iam.evaluate import Access, Grant, evaluate, written_in
from donjon.scan.iac.iam.managed import managed_name
from donjon.scan.iac.model import App, Function
from donjon.scan.model import (
    Confidence,
    Cwe,
    Finding,
    FindingKind,
    Location,
    SasCategory,
    Severity,
)
from donjon.scan.rule import Rule

__all__ = [
    "ADMIN",
    "CHECKS",
    "ESCALATION",
    "RESOURCE_WILDCARD",
    "RULES",
    "SERVICE_WILDCARD",
    "UNSEEN",
]


def _rule(n: int, name: str, severity: Severity, cwe: Cwe, description: str, fix: str) -> Rule:
    return Rule(
        f"DJ-IAC-00{n}", name, FindingKind.IAC, severity, cwe, SasCategory.SAS_4, description, fix
    )


ADMIN = _rule(
    1,
    "iam-admin-access",
    Severity.CRITICAL,
    Cwe.UNNECESSARY_PRIVILEGES,
    "A function's role may do anything: every action on every resource (Action '*', "
    "AdministratorAccess, or an Allow with NotAction, which grants every other action).",
    "Grant only the actions and resources the function uses (a SAM policy template, "
    "or statements naming them).",
)
SERVICE_WILDCARD = _rule(
    2,
    "iam-wildcard-actions",
    Severity.HIGH,
    Cwe.LEAST_PRIVILEGE_VIOLATION,
    "A statement grants every action of a service (s3:*, a *FullAccess managed policy), "
    "every action on some resources, or a wildcard that includes permissions "
    "management actions (s3:Put* grants s3:PutBucketPolicy).",
    "List the actions the function calls instead of a wildcard.",
)
RESOURCE_WILDCARD = _rule(
    3,
    "iam-wildcard-resources",
    Severity.MEDIUM,
    Cwe.LEAST_PRIVILEGE_VIOLATION,
    "A statement grants write, tagging or permissions management actions on every "
    "resource (Resource '*', every resource of a type, or NotResource); read and list "
    "actions on every resource are reported at low severity. Actions that only take "
    "Resource '*' are not reported.",
    "Name the resources (ARNs of the bucket, table, queue) the function works on.",
)
ESCALATION = _rule(
    4,
    "iam-privilege-escalation",
    Severity.HIGH,
    Cwe.IMPROPER_PRIVILEGE_MANAGEMENT,
    "The role grants actions that let the function give itself (or anyone) more "
    "permissions: iam:PassRole on every role (alone or with lambda:CreateFunction and "
    "InvokeFunction, ec2:RunInstances, cloudformation:CreateStack...), "
    "iam:CreatePolicyVersion, iam:Attach*Policy, iam:Put*Policy, sts:AssumeRole on "
    "every role, and the other published escalation paths.",
    "Remove the IAM write actions; scope iam:PassRole to the one role it passes, with an "
    "iam:PassedToService condition.",
)
UNSEEN = _rule(
    5,
    "iam-permissions-unknown",
    Severity.MEDIUM,
    Cwe.INCORRECT_DEFAULT_PERMISSIONS,
    "The function's permissions cannot be checked: its role or a policy is an "
    "unresolved expression (a parameter without default, ${env:...}), a role or managed "
    "policy defined outside the template, or an AWS managed policy Donjon does not know. "
    "Reported at low confidence, never taken as safe.",
    "Define the role and its policies in the template, or give the parameter a default, "
    "so the scan can check them.",
)

RULES: tuple[Rule, ...] = (ADMIN, SERVICE_WILDCARD, RESOURCE_WILDCARD, ESCALATION, UNSEEN)


def _names(actions: Iterable[Action], limit: int = 3) -> str:
    ordered = sorted(actions)
    shown = ", ".join(str(a) for a in ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


def _lower(severity: Severity) -> Severity:
    return Severity(max(Severity.LOW, severity - 1))


class _Reporter:
    """Builds one function's findings with the shared grading."""

    def __init__(self, function: Function) -> None:
        self.function = function
        self.findings: list[Finding] = []

    def grant(
        self,
        rule: Rule,
        grant: Grant,
        what: str,
        *,
        severity: Severity | None = None,
        confidence: Confidence = Confidence.HIGH,
    ) -> None:
        severity = severity or rule.severity
        verb = "may grant" if grant.conditional else "grants"
        if grant.conditional:
            confidence = min(confidence, Confidence.MEDIUM)
        where = ""
        if grant.narrowed:
            confidence = min(confidence, Confidence.MEDIUM)
            severity = _lower(severity)
            keys = ", ".join(sorted({c.key for c in grant.statement.conditions}))
            where = f" (narrowed by a condition on {keys})"
        source = f" through {grant.source}" if grant.source else ""
        message = f"{self.function.where.resource} {verb} {what}{source}{where}"
        path = written_in(grant.statement) or written_in(grant.policy)
        self.add(rule, grant.line, message, severity, confidence, path)

    def add(
        self,
        rule: Rule,
        line: int,
        message: str,
        severity: Severity,
        confidence: Confidence,
        path: str = "",
    ) -> None:
        where = self.function.where
        location = Location(path or where.path, line or where.line, 0, where.resource)
        self.findings.append(
            rule.finding(location, message, confidence=confidence, severity=severity)
        )


def _admin(report: _Reporter, grant: Grant) -> None:
    if grant.every_action:
        what = "every action on every resource"
    else:
        what = "every action except " + ", ".join(grant.statement.not_actions)
        what += " on every resource (NotAction)"
    if grant.denied:
        what += f", less {len(grant.denied)} denied actions ({_names(grant.denied)})"
    report.grant(ADMIN, grant, what + ": administrator access")


def _service_wildcard(report: _Reporter, grant: Grant) -> None:
    statement = grant.statement
    if grant.every_action or grant.not_action:
        scope = ", ".join(statement.resources or statement.not_resources)
        report.grant(SERVICE_WILDCARD, grant, f"every action on {scope}")
        return
    whole = [p for p in statement.actions if p.partition(":")[2].strip("*") == "" and ":" in p]
    if whole:
        report.grant(SERVICE_WILDCARD, grant, f"every action of a service ({', '.join(whole)})")
        return
    for pattern in statement.actions:
        if "*" not in pattern and "?" not in pattern:
            continue
        hidden = [
            a
            for a in catalog().expand(pattern) & grant.actions
            if a.level is AccessLevel.PERMISSIONS_MANAGEMENT
        ]
        if hidden:
            what = f"{pattern}, which includes permissions management actions ({_names(hidden)})"
            report.grant(SERVICE_WILDCARD, grant, what, severity=Severity.MEDIUM)
            return


def _resource_wildcard(report: _Reporter, grant: Grant) -> None:
    keys = key_actions()
    scoped = [a for a in grant.actions if not a.wildcard_only and a.key not in keys]
    if not scoped:
        return
    levels = {a.level for a in scoped}
    if AccessLevel.PERMISSIONS_MANAGEMENT in levels:
        severity, kind = Severity.HIGH, AccessLevel.PERMISSIONS_MANAGEMENT
    elif levels & {AccessLevel.WRITE, AccessLevel.TAGGING, None}:
        severity, kind = Severity.MEDIUM, AccessLevel.WRITE
    else:
        severity, kind = Severity.LOW, AccessLevel.READ
    shown = [
        a for a in scoped if a.level is kind or (kind is AccessLevel.WRITE and a.level is None)
    ]
    scope = (
        "every resource (NotResource)"
        if grant.statement.not_resources
        else ", ".join(r for r in grant.statement.resources)
    )
    what = f"{_names(shown or scoped)} ({kind.value.lower()}) on {scope}"
    report.grant(RESOURCE_WILDCARD, grant, what, severity=severity)


def _escalation(report: _Reporter, grants: list[Grant]) -> None:
    granted: dict[str, list[Grant]] = {}
    granted_as: dict[str, set[Action]] = {}
    for grant in grants:
        for action in grant.of(a for p in PATHS for a in p.actions):
            granted.setdefault(action.key, []).append(grant)
            granted_as.setdefault(action.key, set()).add(action)
    by_line: dict[Grant, list[str]] = {}
    for path in PATHS:
        keyed = [g for g in granted.get(path.key, []) if g.unbounded or not path.unbounded_only]
        if not keyed or not all(a in granted for a in path.actions[1:]):
            continue
        for grant in keyed:
            names = " and ".join(str(a) for a in grant.of(path.actions[:1]))
            others = [_names(granted_as[a], limit=1) for a in path.actions[1:]]
            with_ = f" with {', '.join(others)}" if others else ""
            by_line.setdefault(grant, []).append(f"{names}{with_} ({path.how})")
    for grant in granted.get(ROLE_HANDOVER, []):
        if grant.unbounded and grant not in by_line:
            by_line[grant] = [
                "iam:PassRole on every role (any service it configures runs with any role)"
            ]
    for grant, paths in by_line.items():
        confidence = Confidence.HIGH if grant.unbounded else Confidence.MEDIUM
        more = f"; and {len(paths) - 3} more paths" if len(paths) > 3 else ""
        what = "; ".join(paths[:3]) + more + ": privilege escalation"
        report.grant(ESCALATION, grant, what, confidence=confidence)


def _unseen(report: _Reporter, access: Access) -> None:
    for item in access.unknown:
        message = (
            f"{report.function.where.resource}: the permissions of {item.what} "
            f"{item.expression} are unknown ({item.reason}); not checked"
        )
        report.add(UNSEEN, item.line, message, UNSEEN.severity, Confidence.LOW, item.path)


def function_findings(function: Function) -> list[Finding]:
    """Every IAM finding for one function."""
    access = evaluate(function)
    report = _Reporter(function)
    rest: list[Grant] = []
    for grant in access.grants:
        if not grant.actions:
            continue  # everything it names is denied
        if grant.admin:
            _admin(report, grant)
            continue
        rest.append(grant)
        _service_wildcard(report, grant)
        if grant.unbounded and not grant.source:
            _resource_wildcard(report, grant)
    for policy in access.full_access_by_name:
        name = managed_name(policy.managed) or policy.managed
        message = (
            f"{function.where.resource} is given AWS managed policy {name}, which by its "
            "name grants every action of its service (not in Donjon's table: judged by name)"
        )
        report.add(
            SERVICE_WILDCARD,
            policy.line,
            message,
            Severity.HIGH,
            Confidence.MEDIUM,
            written_in(policy),
        )
    _escalation(report, rest)
    _unseen(report, access)
    return report.findings


def check_iam(app: App) -> Iterator[Finding]:
    """The IAM rules over every function of `app` (AWS roles; other clouds' functions carry
    no IAM statements in the model and yield nothing)."""
    for function in app.functions:
        yield from function_findings(function)


CHECKS = (check_iam,)
