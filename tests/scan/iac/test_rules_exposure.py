"""DJ-IAC-010..015 over hand-built models: what each catches, what it leaves, and how
unresolved and conditional values are graded."""

from __future__ import annotations

from donjon.scan.iac import exposure_rules as rules
from donjon.scan.iac.model import (
    Cloud,
    Condition,
    Effect,
    Statement,
    TriggerKind,
    Unresolved,
    Val,
)
from donjon.scan.model import Confidence, Severity
from iac_support import api, app, bucket, function, graded, queue, route, run

HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def _routes(*triggers: object) -> list[tuple[int, Confidence]]:
    built = app(functions=(function(triggers=triggers),))
    return graded(run(rules.unauthenticated_routes, built))


def test_route_without_authorizer_is_reported() -> None:
    """An HTTP API route whose auth is none is found at its auth line, sure."""
    found = run(
        rules.unauthenticated_routes,
        app(functions=(function(triggers=(route(auth=Val.of("NONE", 22)),)),)),
    )
    assert graded(found) == [(22, HIGH)]
    assert found[0].rule_id == "DJ-IAC-010"
    assert "GET /items" in found[0].message and found[0].location.resource == "Fn"


def test_route_with_authorizer_is_not_reported() -> None:
    """JWT, IAM, Cognito and Lambda authorizers are all authentication."""
    for auth in ("jwt", "aws_iam", "cognito", "lambda"):
        assert _routes(route(auth=Val.of(auth, 22))) == []


def test_every_kind_of_http_route_is_checked_and_events_are_not() -> None:
    """REST, HTTP API, function URL and Azure/Google HTTP triggers; a queue event is not a route."""
    kinds = (TriggerKind.REST_API, TriggerKind.HTTP_API, TriggerKind.FUNCTION_URL, TriggerKind.HTTP)
    for kind in kinds:
        assert _routes(route(kind, auth=Val.of("none", 5))) == [(5, HIGH)]
    assert _routes(route(TriggerKind.QUEUE, auth=Val.of("none", 5))) == []


def test_conditional_auth_is_may() -> None:
    """An authorizer set in one Fn::If branch only: the route may be open (medium)."""
    found = run(
        rules.unauthenticated_routes,
        app(functions=(function(triggers=(route(auth=Val(("none", "jwt"), (), 23, True)),)),)),
    )
    assert graded(found) == [(23, MEDIUM)]
    assert "may be open" in found[0].message


def test_unresolved_auth_is_low_and_named() -> None:
    """An authorizer from an unresolved expression is never taken as present."""
    auth = Val[str].unknown("!ImportValue SharedAuth", "import from another stack", 24)
    found = run(
        rules.unauthenticated_routes, app(functions=(function(triggers=(route(auth=auth),)),))
    )
    assert graded(found) == [(24, LOW)]
    assert "!ImportValue SharedAuth" in found[0].message


def test_route_whose_auth_the_loader_left_out_is_low() -> None:
    """No auth written at all by the loader: reported low, never silently safe."""
    assert _routes(route(auth=Val())) == [(20, LOW)]


def test_public_acls_are_graded_by_what_they_open() -> None:
    """public-read-write is critical, public-read high, authenticated-read medium; private:
    nothing."""
    expected = {
        "public-read-write": Severity.CRITICAL,
        "public-read": Severity.HIGH,
        "authenticated-read": Severity.MEDIUM,
    }
    for acl, severity in expected.items():
        blocked_off = Val.of(False, 52)
        found = run(
            rules.public_acls,
            app(buckets=(bucket(acl=Val.of(acl, 51), public_access_blocked=blocked_off),)),
        )
        assert [(f.severity, f.confidence, f.location.line) for f in found] == [
            (severity, HIGH, 51)
        ]
    assert run(rules.public_acls, app(buckets=(bucket(),))) == []


def test_public_acl_behind_a_public_access_block_is_low() -> None:
    """S3 ignores public ACLs when the block is on: still reported, low and explained."""
    found = run(rules.public_acls, app(buckets=(bucket(acl=Val.of("public-read", 51)),)))
    assert [(f.severity, f.confidence) for f in found] == [(Severity.LOW, LOW)]
    assert "ignores the ACL" in found[0].message


def _policy(*statements: Statement) -> list[tuple[int, Confidence]]:
    built = app(buckets=(bucket(policy=statements, public_access_blocked=Val.of(False)),))
    return graded(run(rules.public_policies, built))


def test_bucket_policy_open_to_anyone_is_reported() -> None:
    """Principal "*" with s3:GetObject and no condition: public read."""
    st = Statement(Effect.ALLOW, 55, actions=("s3:GetObject",), principals=("*",))
    assert _policy(st) == [(55, HIGH)]


def test_narrowing_conditions_make_a_wildcard_principal_someone() -> None:
    """aws:SourceArn / SourceAccount / PrincipalOrgID / SourceVpce pin the caller."""
    for key in ("aws:SourceArn", "AWS:SourceAccount", "aws:PrincipalOrgID", "aws:SourceVpce"):
        cond = Condition("StringEquals", key, ("arn:aws:cloudfront::111122223333:distribution/E1",))
        st = Statement(Effect.ALLOW, 55, actions=("s3:GetObject",), principals=("*",),
                       conditions=(cond,))  # fmt: skip
        assert _policy(st) == [], key


def test_conditions_that_do_not_narrow_leave_it_public() -> None:
    """SecureTransport, negated, IfExists and wildcard-valued conditions still let anyone in."""
    conditions = (
        Condition("Bool", "aws:SecureTransport", ("true",)),
        Condition("StringNotEquals", "aws:SourceAccount", ("111122223333",)),
        Condition("StringEqualsIfExists", "aws:SourceArn", ("arn:aws:sns:eu-west-1:1:t",)),
        Condition("ArnLike", "aws:SourceArn", ("arn:aws:sns:*:*:*",)),
    )
    for cond in conditions:
        st = Statement(Effect.ALLOW, 55, actions=("s3:*",), principals=("*",), conditions=(cond,))
        assert _policy(st) == [(55, HIGH)], cond


def test_deny_and_named_principals_are_not_public() -> None:
    """A Deny to "*" is a guard; an account principal is someone."""
    deny = Statement(Effect.DENY, 55, actions=("s3:*",), principals=("*",))
    named = Statement(Effect.ALLOW, 56, actions=("s3:GetObject",),
                      principals=("arn:aws:iam::111122223333:root",))  # fmt: skip
    assert _policy(deny, named) == []


def test_not_principal_allow_and_google_all_users_are_public() -> None:
    """Allow with NotPrincipal admits everyone else; allUsers is Google's anyone."""
    not_principal = Statement(Effect.ALLOW, 55, actions=("s3:GetObject",),
                              not_principals=("arn:aws:iam::1:root",))  # fmt: skip
    all_users = Statement(Effect.ALLOW, 56, actions=("storage.objects.get",),
                          principals=("allUsers",))  # fmt: skip
    assert _policy(not_principal, all_users) == [(55, HIGH), (56, HIGH)]


def test_policy_unresolved_and_conditional_statements_are_graded_down() -> None:
    """A public statement with an unresolved part is low; one under Fn::If is medium ("may")."""
    unknown = Unresolved("!Ref Reader", "parameter without default")
    partly = Statement(Effect.ALLOW, 55, actions=("s3:GetObject",), principals=("*",),
                       unresolved=(unknown,))  # fmt: skip
    iffy = Statement(Effect.ALLOW, 56, actions=("s3:GetObject",), principals=("*",),
                     conditional=True)  # fmt: skip
    whose = Statement(Effect.ALLOW, 57, actions=("s3:GetObject",), unresolved=(unknown,))
    assert _policy(partly, iffy, whose) == [(55, LOW), (56, MEDIUM), (57, LOW)]


def test_queue_and_topic_policies_are_checked_too() -> None:
    """An SNS topic policy letting anyone publish is the same exposure."""
    st = Statement(Effect.ALLOW, 61, actions=("sns:Publish",), principals=("*",))
    found = run(rules.public_policies, app(queues=(queue("Alerts", "sns", policy=(st,)),)))
    assert graded(found) == [(61, HIGH)]
    assert found[0].message.startswith("sns Alerts policy allows anyone: sns:Publish")


def test_missing_public_access_block() -> None:
    """False is sure; an S3 bucket that says nothing is low (S3's new default blocks), an
    Azure one medium; all four flags on is clean."""
    off = bucket(public_access_blocked=Val.of(False, 52))
    silent_s3 = bucket("Logs", public_access_blocked=Val())
    silent_azure = bucket("Blobs", cloud=Cloud.AZURE, public_access_blocked=Val())
    found = run(
        rules.missing_public_access_blocks, app(buckets=(off, silent_s3, silent_azure, bucket()))
    )
    assert [(f.location.resource, f.confidence) for f in found] == [
        ("Data", HIGH),
        ("Logs", LOW),
        ("Blobs", MEDIUM),
    ]
    assert all(f.severity is Severity.LOW for f in found)


def test_public_invoke_permission() -> None:
    """Principal "*" without SourceArn is reported; with SourceArn, or a service principal, not."""
    open_st = Statement(Effect.ALLOW, 30, actions=("lambda:InvokeFunction",), principals=("*",))
    sourced = Statement(
        Effect.ALLOW, 31, actions=("lambda:InvokeFunction",), principals=("*",),
        conditions=(Condition("ArnLike", "AWS:SourceArn", ("arn:aws:s3:::uploads",)),),
    )  # fmt: skip
    service = Statement(Effect.ALLOW, 32, actions=("lambda:InvokeFunction",),
                        principals=("service:s3.amazonaws.com",))  # fmt: skip
    found = run(
        rules.public_invoke_permissions,
        app(functions=(function(invoke_policy=(open_st, sourced, service)),)),
    )
    assert graded(found) == [(30, HIGH)]
    assert found[0].rule_id == "DJ-IAC-014"


def test_function_url_permission_is_left_to_the_url_rule() -> None:
    """lambda:InvokeFunctionUrl to "*" for AuthType NONE is the public URL's own grant
    (DJ-IAC-010 reports the URL); the same grant for AWS_IAM URLs lets any account in."""
    none_cond = (Condition("StringEquals", "lambda:FunctionUrlAuthType", ("NONE",)),)
    iam_cond = (Condition("StringEquals", "lambda:FunctionUrlAuthType", ("AWS_IAM",)),)
    url_none = Statement(Effect.ALLOW, 30, actions=("lambda:InvokeFunctionUrl",),
                         principals=("*",), conditions=none_cond)  # fmt: skip
    url_iam = Statement(Effect.ALLOW, 31, actions=("lambda:InvokeFunctionUrl",),
                        principals=("*",), conditions=iam_cond)  # fmt: skip
    found = run(
        rules.public_invoke_permissions,
        app(functions=(function(invoke_policy=(url_none, url_iam)),)),
    )
    assert graded(found) == [(31, HIGH)]


def test_open_cors_on_an_api_and_with_credentials() -> None:
    """ "*" is medium severity; with credentials allowed, high; listed origins are fine."""
    plain = api(cors_origins=Val.of("*", 72))
    creds = api("Creds", line=90, cors_origins=Val.of("*", 92), cors_credentials=Val.of(True, 93))
    listed = api("Listed", line=100, cors_origins=Val(("https://app.example.com",), (), 102))
    found = run(rules.open_cors, app(apis=(plain, creds, listed)))
    assert [(f.location.line, f.severity) for f in found] == [
        (72, Severity.MEDIUM),
        (92, Severity.HIGH),
    ]


def test_open_cors_on_a_route_is_reported_once_per_line() -> None:
    """A route repeating its API's CORS line is not a second finding."""
    cors = Val.of("*", 72)
    built = app(
        apis=(api(cors_origins=cors),),
        functions=(
            function(
                triggers=(route(cors_origins=cors), route(line=21, cors_origins=Val.of("*", 25)))
            ),
        ),
    )
    assert [f.location.line for f in run(rules.open_cors, built)] == [72, 25]


def test_open_cors_conditional_and_unresolved() -> None:
    """ "*" in one branch is may (medium); an unresolved origin list is low."""
    iffy = api(cors_origins=Val(("*", "https://a.example"), (), 72, True))
    unknown = api("U", line=90, cors_origins=Val[str].unknown("${env:ORIGINS}", "environment", 91))
    assert graded(run(rules.open_cors, app(apis=(iffy, unknown)))) == [(72, MEDIUM), (91, LOW)]
