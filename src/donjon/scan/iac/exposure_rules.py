"""DJ-IAC-010..015: what a template opens to the world.

Routes without authentication, storage readable by anyone (ACLs, resource policies, no
public access block), functions anyone may invoke, and CORS open to every origin. Each
check reads only the model; how an unresolved or conditional value is graded is
`judge`'s.
"""

from __future__ import annotations

from collections.abc import Iterator

from donjon.scan.iac.judge import Reading, read
from donjon.scan.iac.model import (
    App,
    Cloud,
    HttpApi,
    Statement,
    Trigger,
    TriggerKind,
    Where,
)
from donjon.scan.iac.public import ROUTES, public_statements, url_permission
from donjon.scan.model import Confidence, Cwe, Finding, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule

__all__ = ["CHECKS", "RULES"]

_IAC = FindingKind.IAC


def _rule(rule_id: str, name: str, severity: Severity, cwe: Cwe, sas: SasCategory,
          description: str, fix: str) -> Rule:  # fmt: skip
    return Rule(rule_id, name, _IAC, severity, cwe, sas, description, fix)


UNAUTHENTICATED_ROUTE = _rule(
    "DJ-IAC-010", "unauthenticated-route", Severity.HIGH, Cwe.MISSING_AUTHENTICATION,
    SasCategory.SAS_2,
    "An HTTP route (API Gateway REST or HTTP API, a function URL, an Azure or Google HTTP "
    "trigger, a Serverless http/httpApi event) whose effective authorisation is none: "
    "anyone on the internet can run the function.",
    "Put an authorizer on the route or the API's default (Cognito, JWT, a Lambda "
    "authorizer, AWS_IAM; AuthType AWS_IAM for function URLs; authLevel function or "
    "Easy Auth on Azure; no allUsers invoker on Google), or state why it is public.",
)  # fmt: skip
PUBLIC_ACL = _rule(
    "DJ-IAC-011", "public-storage-acl", Severity.HIGH, Cwe.IMPROPER_ACCESS_CONTROL,
    SasCategory.SAS_3,
    "A bucket or container whose ACL lets everyone (public-read, public-read-write) or "
    "every authenticated cloud account (authenticated-read) read it, or write to it.",
    "Make the ACL private (S3: ObjectOwnership BucketOwnerEnforced; Azure: "
    "container_access_type private; Google: uniform bucket-level access) and grant "
    "readers through a policy naming them.",
)  # fmt: skip
PUBLIC_POLICY = _rule(
    "DJ-IAC-012", "public-resource-policy", Severity.HIGH, Cwe.IMPROPER_ACCESS_CONTROL,
    SasCategory.SAS_3,
    "A bucket, queue or topic policy allows Principal \"*\" (or AWS \"*\", allUsers) "
    "without a condition that narrows who that is (aws:SourceArn, aws:SourceAccount, "
    "aws:PrincipalOrgID, aws:SourceVpce...).",
    "Name the principals (an account, a role, a service) or add a condition on "
    "aws:SourceArn/aws:SourceAccount (services) or aws:PrincipalOrgID (your organisation).",
)  # fmt: skip
NO_PUBLIC_ACCESS_BLOCK = _rule(
    "DJ-IAC-013", "public-access-not-blocked", Severity.LOW, Cwe.IMPROPER_ACCESS_CONTROL,
    SasCategory.SAS_3,
    "A bucket without a public access block (S3's four BlockPublic*/IgnorePublicAcls/"
    "RestrictPublicBuckets flags, Azure's public blob access off, Google's public access "
    "prevention enforced): one ACL or policy change away from public.",
    "Turn every public access block flag on for the bucket (S3 PublicAccessBlockConfiguration, "
    "allow_nested_items_to_be_public = false, public_access_prevention = \"enforced\").",
)  # fmt: skip
PUBLIC_INVOKE = _rule(
    "DJ-IAC-014", "public-invoke-permission", Severity.HIGH, Cwe.IMPROPER_ACCESS_CONTROL,
    SasCategory.SAS_2,
    "A permission lets any principal invoke the function (AWS::Lambda::Permission or "
    "aws_lambda_permission with Principal \"*\" and no SourceArn/SourceAccount; a Google "
    "invoker binding to allUsers).",
    "Name the service or account that invokes the function and add its SourceArn and "
    "SourceAccount; on Google, grant roles/cloudfunctions.invoker to named members.",
)  # fmt: skip
OPEN_CORS = _rule(
    "DJ-IAC-015", "open-cors", Severity.MEDIUM, Cwe.PERMISSIVE_CORS, SasCategory.SAS_3,
    "An API or HTTP trigger allows every origin (\"*\") in its CORS configuration: any web "
    "page may call it from a visitor's browser (high when credentials are allowed too).",
    "List the origins of your own front ends in AllowOrigins (cors_configuration."
    "allow_origins); never combine a wildcard with AllowCredentials.",
)  # fmt: skip

RULES: tuple[Rule, ...] = (
    UNAUTHENTICATED_ROUTE, PUBLIC_ACL, PUBLIC_POLICY, NO_PUBLIC_ACCESS_BLOCK, PUBLIC_INVOKE,
    OPEN_CORS,
)  # fmt: skip

_KIND_TEXT = {
    TriggerKind.REST_API: "REST API route",
    TriggerKind.HTTP_API: "HTTP API route",
    TriggerKind.FUNCTION_URL: "function URL",
    TriggerKind.HTTP: "HTTP trigger",
}
_PUBLIC_ACLS = {
    "public-read": Severity.HIGH,
    "public-read-write": Severity.CRITICAL,
    "authenticated-read": Severity.MEDIUM,
}


def _route_name(trigger: Trigger) -> str:
    route = " ".join(p for p in (trigger.method.upper(), trigger.path) if p)
    return f"{_KIND_TEXT[trigger.kind]} {route}".strip()


def unauthenticated_routes(app: App) -> Iterator[Finding]:
    """DJ-IAC-010: HTTP routes whose effective authorisation is none (or unknown)."""
    for function in app.functions:
        for trigger in function.triggers:
            if trigger.kind not in ROUTES:
                continue
            if not trigger.auth.present:  # a loader that could not tell: never safe
                reading = Reading(Confidence.LOW, "", unresolved="its authorisation is unknown")
            else:
                found = read(trigger.auth, lambda auth: auth.lower() == "none")
                if found is None:
                    continue
                reading = found
            yield UNAUTHENTICATED_ROUTE.finding(
                trigger.where.location(trigger.auth.line),
                f"{_route_name(trigger)} of {function.where.resource} {reading.verb} open "
                f"to anyone: no authorizer{reading.note()}",
                confidence=reading.confidence,
            )


def public_acls(app: App) -> Iterator[Finding]:
    """DJ-IAC-011: public-read, public-read-write and authenticated-read ACLs."""
    for bucket in app.buckets:
        reading = read(bucket.acl, lambda acl: acl in _PUBLIC_ACLS)
        if reading is None:
            continue
        acl = str(reading.value) if reading.value is not None else ""
        severity = _PUBLIC_ACLS.get(acl, Severity.MEDIUM)
        confidence = reading.confidence
        tail = reading.note()
        if bucket.public_access_blocked.all(bool):
            # The block makes S3 ignore public ACLs: still a mistake, no longer an exposure.
            severity, confidence = Severity.LOW, Confidence.LOW
            tail += "; its public access block ignores the ACL today"
        yield PUBLIC_ACL.finding(
            bucket.where.location(bucket.acl.line),
            f"bucket {bucket.where.resource} {reading.may}has ACL {acl or 'unresolved'}{tail}",
            confidence=confidence,
            severity=severity,
        )


def public_policies(app: App) -> Iterator[Finding]:
    """DJ-IAC-012: bucket, queue and topic policies open to any principal."""
    holders: list[tuple[str, Where, tuple[Statement, ...], bool]] = [
        ("bucket", b.where, b.policy, b.public_access_blocked.all(bool)) for b in app.buckets
    ]
    holders += [(q.kind or "queue", q.where, q.policy, False) for q in app.queues]
    for kind, where, policy, blocked in holders:
        for st, sure, why in public_statements(policy):
            may = "may allow" if sure is not Confidence.HIGH else "allows"
            actions = ", ".join(st.actions) or "every action"
            if st.not_actions:
                actions = f"every action but {', '.join(st.not_actions)}"
            tail = f" ({why})" if why else ""
            severity, confidence = None, sure
            if blocked:  # RestrictPublicBuckets: only the owner's principals get through
                severity, confidence = Severity.LOW, Confidence.LOW
                tail += "; its public access block restricts it today"
            yield PUBLIC_POLICY.finding(
                where.location(st.line),
                f"{kind} {where.resource} policy {may} anyone: {actions}{tail}",
                confidence=confidence,
                severity=severity,
            )


def missing_public_access_blocks(app: App) -> Iterator[Finding]:
    """DJ-IAC-013: buckets without every public access path blocked.

    An S3 bucket whose template says nothing is graded low: S3 has blocked public access
    on new buckets by default since April 2023, but the template does not pin it (an
    account setting, an older bucket or a later change decide). Azure and Google leave
    public access possible by default."""
    for bucket in app.buckets:
        val = bucket.public_access_blocked
        if not val.present:
            aws = bucket.cloud is Cloud.AWS
            text = "declares no public access block" + (
                " (S3's default for new buckets blocks it; the template does not pin it)"
                if aws
                else ""
            )
            confidence = Confidence.LOW if aws else Confidence.MEDIUM
        else:
            reading = read(val, lambda blocked: not blocked)
            if reading is None:
                continue
            text = f"{reading.may}does not block public access{reading.note()}"
            confidence = reading.confidence
        yield NO_PUBLIC_ACCESS_BLOCK.finding(
            bucket.where.location(val.line),
            f"bucket {bucket.where.resource} {text}",
            confidence=confidence,
        )


def public_invoke_permissions(app: App) -> Iterator[Finding]:
    """DJ-IAC-014: invoke permissions granted to any principal without a source."""
    for function in app.functions:
        for st, confidence, why in public_statements(function.invoke_policy):
            if url_permission(st):
                continue
            may = "may let" if confidence is not Confidence.HIGH else "lets"
            tail = f" ({why})" if why else ""
            yield PUBLIC_INVOKE.finding(
                function.where.location(st.line),
                f"a permission {may} anyone invoke {function.where.resource}{tail}",
                confidence=confidence,
            )


def _cors(holder: Trigger | HttpApi, where: Where, what: str) -> Finding | None:
    reading = read(holder.cors_origins, lambda origin: origin.strip() == "*")
    if reading is None:
        return None
    credentials = holder.cors_credentials.any(bool)
    return OPEN_CORS.finding(
        where.location(holder.cors_origins.line),
        f"{what} {reading.may}allows every origin (*) in CORS{reading.note()}"
        + (", with credentials" if credentials else ""),
        confidence=reading.confidence,
        severity=Severity.HIGH if credentials else None,
    )


def open_cors(app: App) -> Iterator[Finding]:
    """DJ-IAC-015: CORS open to every origin, on APIs and on triggers with their own."""
    seen: set[tuple[str, int]] = set()
    found: list[Finding | None] = [_cors(api, api.where, f"API {api.where.resource}")
                                   for api in app.apis]  # fmt: skip
    for function in app.functions:
        for trigger in function.triggers:
            if trigger.kind in ROUTES:
                found.append(_cors(trigger, trigger.where, _route_name(trigger)))
    for finding in found:
        if finding is None:
            continue
        key = (finding.location.path, finding.location.line)
        if key not in seen:  # a route repeating its API's setting is one finding
            seen.add(key)
            yield finding


CHECKS = (
    unauthenticated_routes,
    public_acls,
    public_policies,
    missing_public_access_blocks,
    public_invoke_permissions,
    open_cors,
)
