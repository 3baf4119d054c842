"""DJ-IAC-026..030 over hand-built models: dead letters for asynchronous sources,
concurrency caps on public functions, tracing, API access logs, log retention."""

from __future__ import annotations

from dataclasses import replace

from donjon.scan.iac import ops_rules as rules
from donjon.scan.iac.model import (
    Cloud,
    Effect,
    LogGroup,
    Statement,
    Trigger,
    TriggerKind,
    Val,
)
from donjon.scan.model import Confidence
from iac_support import api, app, function, graded, log_group, route, run, where

HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def _event(kind: TriggerKind) -> Trigger:
    return Trigger(kind, where("Fn", 20))


def test_async_trigger_without_dead_letter_is_reported() -> None:
    """An S3 event and no DLQ: high; an SQS poller (synchronous) is not asked for one."""
    found = run(
        rules.missing_dead_letters,
        app(functions=(function(triggers=(_event(TriggerKind.STORAGE),)),)),
    )
    assert graded(found) == [(10, HIGH)]
    assert "storage events" in found[0].message
    sqs = app(functions=(function(triggers=(_event(TriggerKind.QUEUE),)),))
    assert run(rules.missing_dead_letters, sqs) == []


def test_dead_letter_present_unresolved_or_conditional() -> None:
    """A DLQ (even an unresolved ARN) is enough; one set under Fn::If only may be missing."""
    events = (_event(TriggerKind.TOPIC),)
    dlq = function(triggers=events, dead_letter=Val.of("arn:aws:sqs:eu-west-1:1:dlq", 15))
    imported = function("B", triggers=events,
                        dead_letter=Val[str].unknown("!ImportValue Dlq", "import", 15))  # fmt: skip
    iffy = function("C", line=30, triggers=events, dead_letter=Val(("arn:x",), (), 35, True))
    found = run(rules.missing_dead_letters, app(functions=(dlq, imported, iffy)))
    assert graded(found) == [(35, MEDIUM)]
    assert "may have no dead-letter" in found[0].message


def test_dead_letters_are_an_aws_rule() -> None:
    """An Azure blob trigger keeps failed events in its poison queue: not reported."""
    azure = function(cloud=Cloud.AZURE, triggers=(_event(TriggerKind.STORAGE),))
    assert run(rules.missing_dead_letters, app(functions=(azure,))) == []


def test_public_function_without_reserved_concurrency() -> None:
    """An unauthenticated route or a public permission without a cap is reported; a cap,
    or an authenticated route, is not."""
    open_route = (route(auth=Val.of("none", 22)),)
    perm = (Statement(Effect.ALLOW, 30, actions=("lambda:InvokeFunction",), principals=("*",)),)
    built = app(
        functions=(
            function("Open", triggers=open_route),
            function("Perm", invoke_policy=perm),
            function("Capped", triggers=open_route, reserved_concurrency=Val.of(10, 16)),
            function("Authed", triggers=(route(),)),
        )
    )
    found = run(rules.missing_concurrency_caps, built)
    assert [(f.location.resource, f.confidence) for f in found] == [("Open", HIGH), ("Perm", HIGH)]


def test_concurrency_when_the_route_may_be_open() -> None:
    """A route open in one Fn::If branch: the finding is medium, as the route's."""
    iffy = route(auth=Val(("none", "jwt"), (), 22, True))
    found = run(rules.missing_concurrency_caps, app(functions=(function(triggers=(iffy,)),)))
    assert graded(found) == [(10, MEDIUM)]


def test_tracing_off_absent_conditional_unresolved() -> None:
    """PassThrough and absent are off (high); Active in one branch only is may; unresolved low."""
    built = app(
        functions=(
            function("Pass", tracing=Val.of("PassThrough", 12)),
            function("Absent", tracing=Val()),
            function("Iffy", tracing=Val(("Active",), (), 12, True)),
            function("Unknown", tracing=Val[str].unknown("!Ref Tracing", "no default", 12)),
            function("On"),
        )
    )
    found = run(rules.tracing_disabled, built)
    assert [(f.location.resource, f.confidence) for f in found] == [
        ("Pass", HIGH),
        ("Absent", HIGH),
        ("Iffy", MEDIUM),
        ("Unknown", LOW),
    ]
    assert "!Ref Tracing" in found[3].message


def test_api_access_logs() -> None:
    """An API without access logs is reported; with them, not."""
    found = run(
        rules.api_access_logs_disabled, app(apis=(api(access_log=Val.of(False, 71)), api("Ok")))
    )
    assert graded(found) == [(71, HIGH)]


def test_log_retention() -> None:
    """A function with no log group, and a log group with no retention, are reported."""
    forever = log_group("Forever", line=100, retention_days=Val())
    built = app(
        functions=(function("NoGroup", log_group=None), function("Ok")),
        log_groups=(forever,),
    )
    found = run(rules.missing_log_retention, built)
    assert [(f.location.resource, f.location.line, f.confidence) for f in found] == [
        ("NoGroup", 10, MEDIUM),
        ("Forever", 100, HIGH),
    ]


def test_the_group_lambda_makes_itself_is_no_log_group() -> None:
    """A loader that writes Lambda's own group at the function (no retention, no key):
    the function declares no log group (medium), not a second finding on the group."""
    fn = function("Implicit")
    built = app(functions=(replace(fn, log_group=LogGroup(fn.where)),))
    found = run(rules.missing_log_retention, built)
    assert graded(found) == [(10, MEDIUM)]
    assert "declares no log group" in found[0].message


def test_log_group_shared_by_function_and_app_is_reported_once() -> None:
    """A function's log group that is also among the app's log groups: one finding."""
    group = log_group("Shared", line=100, retention_days=Val.of(0, 101))
    built = app(functions=(function(log_group=group),), log_groups=(group,))
    assert graded(run(rules.missing_log_retention, built)) == [(101, HIGH)]
