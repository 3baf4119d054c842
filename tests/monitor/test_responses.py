"""The responder on a real audit log and SQLite file: each response, its record, its undoing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import Engine

from baseline_support import Records, feed
from donjon.audit.errors import RecordPending
from donjon.audit.log import AuditEvent, AuditLog
from donjon.config import MonitorSettings
from donjon.monitor.engine import Monitor
from donjon.monitor.findings import Finding, Subject
from donjon.monitor.quarantine import FunctionQuarantined, NotQuarantined, Quarantines
from donjon.monitor.rates import call_rate, cost
from donjon.monitor.responses import (
    DEFAULT_RESPONSES,
    KNOWN_KINDS,
    Responder,
    ResponseConfigError,
    ResponsePolicy,
    parse_responses,
)
from donjon.monitor.throttles import MAX_THROTTLES, Throttle, Throttled, Throttles
from donjon.ratelimit import MemoryRateLimiter
from donjon.store import QuarantineStore
from monitor_support import EveryDenial, FakeClock, make_engine, make_log


class Keys:
    """Stands in for the node's key revocation: which ids it was asked to revoke."""

    def __init__(self, live: set[str], fail: bool = False) -> None:
        self.live = live
        self.revoked: list[str] = []
        self.fail = fail

    async def __call__(self, key_id: str) -> bool:
        if self.fail:
            raise RuntimeError("the database is gone")
        self.revoked.append(key_id)
        if key_id in self.live:
            self.live.discard(key_id)
            return True
        return False


class Rig:
    """A responder over a real audit log, quarantine store and rate limiter, on a fake clock."""

    def __init__(self, engine: Engine, policy: ResponsePolicy, keys: Keys) -> None:
        self.clock = FakeClock()
        self.log: AuditLog = make_log(engine)
        self.log.start()
        self.engine = engine
        self.throttles = Throttles(MemoryRateLimiter(self.clock), self.clock)
        self.quarantines = Quarantines(QuarantineStore(engine), self.log, self.clock)
        self.keys = keys
        self.responder = Responder(
            self.log, policy, self.throttles, self.quarantines, keys, self.clock
        )

    def records(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.log.tail(1000) if r["action"] == action]


def _finding(kind: str, subject: Subject, summary: str = "seen") -> Finding:
    return Finding(kind, "test", "high", subject, summary, (1,), 1_000_000.0)


async def _with_rig(
    tmp_path: Path,
    policy: ResponsePolicy,
    work: Any,
    keys: Keys | None = None,
) -> Rig:
    rig = Rig(make_engine(tmp_path), policy, keys or Keys({"0123456789abcdef"}))
    try:
        await work(rig)
    finally:
        rig.log.stop()
    return rig


def test_parse_responses_reads_kind_action_pairs() -> None:
    """DONJON_MONITOR_RESPONSES is read as kind=action pairs, spaces and empty entries allowed."""
    assert parse_responses("") == {}
    assert parse_responses(
        " first_seen.function = revoke, egress.refused=none,, sandbox.violation=throttle"
    ) == {
        "first_seen.function": "revoke",
        "egress.refused": "none",
        "sandbox.violation": "throttle",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("auth.credential_stuffing", "is not kind=action"),
        ("auth.credential_stufing=throttle", "unknown finding kind"),
        ("egress.refused=block", "unknown response"),
        ("egress.refused=none,egress.refused=quarantine", "given twice"),
        ("egress.refused=revoke", "cannot answer"),
        ("first_seen.source=quarantine", "cannot answer"),
    ],
)
def test_parse_responses_refuses_bad_entries(text: str, says: str) -> None:
    """A malformed entry, an unknown kind or action, a repeat or a misfit is a clear error."""
    with pytest.raises(ResponseConfigError, match=says):
        parse_responses(text)


def test_bad_throttle_rate_is_refused() -> None:
    """DONJON_MONITOR_THROTTLE must be a rate."""
    with pytest.raises(ResponseConfigError, match="not a rate"):
        ResponsePolicy.from_settings(MonitorSettings(throttle="ten/minute"))
    policy = ResponsePolicy.from_settings(MonitorSettings(throttle="3/hour", throttle_s=60))
    assert (policy.throttle_count, policy.throttle_period_s, policy.throttle_s) == (3, 3600, 60)


def test_defaults_never_revoke() -> None:
    """No finding kind revokes a key unless configured; every known kind has a default."""
    assert set(DEFAULT_RESPONSES) == set(KNOWN_KINDS)
    assert "revoke" not in DEFAULT_RESPONSES.values()
    assert DEFAULT_RESPONSES["auth.credential_stuffing"] == "throttle"
    assert DEFAULT_RESPONSES["egress.refused"] == "quarantine"


def test_throttle_answers_credential_stuffing(tmp_path: Path) -> None:
    """A source found stuffing credentials gets a tighter bucket, audited with the alert seq."""
    policy = ResponsePolicy(throttle_count=2, throttle_period_s=60, throttle_s=600)

    async def work(rig: Rig) -> None:
        finding = _finding("auth.credential_stuffing", Subject("source", "203.0.113.9"))
        await rig.responder.respond(finding, 41)
        await rig.throttles.check("source", "203.0.113.9")
        await rig.throttles.check("source", "203.0.113.9")
        with pytest.raises(Throttled, match="alert 41") as refused:
            await rig.throttles.check("source", "203.0.113.9")
        assert refused.value.retry_after_s > 0
        await rig.throttles.check("source", "198.51.100.1")  # another source: not throttled
        rig.clock.advance(601)  # the throttle ends by itself
        for _ in range(5):
            await rig.throttles.check("source", "203.0.113.9")
        assert rig.throttles.active() == []

    rig = asyncio.run(_with_rig(tmp_path, policy, work))
    [record] = rig.records("response.throttle")
    assert record["target"] == "source:203.0.113.9"
    assert record["outcome"] == "ok"
    assert record["actor"] == "system:monitor"
    assert record["detail"]["alert_seq"] == 41
    assert record["detail"]["kind"] == "auth.credential_stuffing"
    assert record["detail"]["rate"] == "2/minute"


def test_throttle_of_a_principal_is_lifted_by_hand(tmp_path: Path) -> None:
    """A throttled principal is served again at once once the throttle is removed."""
    policy = ResponsePolicy(throttle_count=1, throttle_period_s=3600)

    async def work(rig: Rig) -> None:
        subject = Subject("principal", "0123456789abcdef")  # a bare key id: its key's principal
        await rig.responder.respond(_finding("first_seen.function", subject), 7)
        await rig.throttles.check("principal", "key:0123456789abcdef")
        with pytest.raises(Throttled):
            await rig.throttles.check("principal", "key:0123456789abcdef")
        lifted = rig.throttles.remove("principal", "key:0123456789abcdef")
        assert lifted is not None and lifted.alert_seq == 7
        await rig.throttles.check("principal", "key:0123456789abcdef")
        assert rig.keys.revoked == []  # throttled, never revoked by default

    asyncio.run(_with_rig(tmp_path, policy, work))


def test_a_flood_of_source_throttles_does_not_lift_a_principals() -> None:
    """Throttles are capped (MAX_THROTTLES): the addresses an attacker spreads credential
    stuffing over (a /64 of IPv6 is 2**64 of them, 20 failures each) make room among
    themselves, and never push out the throttle on its stolen key or on a function."""
    clock = FakeClock()
    throttles = Throttles(MemoryRateLimiter(clock), clock)

    def throttle(kind: Literal["principal", "source", "function"], id_: str) -> Throttle:
        return Throttle(kind, id_, 1, 3600.0, clock(), clock() + 3600, "seen", 1)

    throttles.add(throttle("principal", "key:0123456789abcdef"))
    throttles.add(throttle("function", "resize"))
    for n in range(MAX_THROTTLES + 10):
        throttles.add(throttle("source", f"2001:db8::{n:x}"))
        clock.advance(0.001)
    subjects = {t.subject for t in throttles.active()}
    assert len(subjects) == MAX_THROTTLES
    assert {"principal:key:0123456789abcdef", "function:resize"} <= subjects
    assert "source:2001:db8::0" not in subjects  # the oldest sources made room


def test_quarantine_survives_a_restart_until_released(tmp_path: Path) -> None:
    """A quarantine is stored: a new node's view refuses the function until it is released."""

    async def work(rig: Rig) -> None:
        finding = _finding("egress.refused", Subject("function", "fetcher@3"), "tried evil.test")
        await rig.responder.respond(finding, 12)
        with pytest.raises(FunctionQuarantined, match=r"\(egress\.refused, alert 12\)") as told:
            rig.quarantines.check("fetcher")
        # Callers are told the finding's kind; the stored reason keeps its summary.
        assert "evil.test" not in told.value.message
        [stored] = rig.quarantines.all()
        assert stored.reason == "egress.refused: tried evil.test"
        rig.quarantines.check("other")  # only that function
        again = Quarantines(QuarantineStore(rig.engine), rig.log)  # as a restarted node
        with pytest.raises(FunctionQuarantined) as refused:
            again.check("fetcher")
        assert refused.value.problem_fields()["alert_seq"] == 12
        await again.release("fetcher", by="key:admin", request_id="r1")
        again.check("fetcher")
        with pytest.raises(NotQuarantined):
            await again.release("fetcher", by="key:admin", request_id="r2")
        assert Quarantines(QuarantineStore(rig.engine), rig.log).all() == []

    rig = asyncio.run(_with_rig(tmp_path, ResponsePolicy(), work))
    [quarantined] = rig.records("response.quarantine")
    assert quarantined["target"] == "function:fetcher"
    assert quarantined["detail"]["alert_seq"] == 12
    assert quarantined["detail"]["kind"] == "egress.refused"
    [released] = rig.records("function.release")
    assert released["actor"] == "key:admin"
    assert released["detail"]["alert_seq"] == 12


def test_revoke_only_when_configured(tmp_path: Path) -> None:
    """Configured to revoke, the key is revoked, audited with its alert and how to undo it."""
    policy = ResponsePolicy(parse_responses("first_seen.function=revoke"))

    async def work(rig: Rig) -> None:
        subject = Subject("principal", "key:0123456789abcdef")
        await rig.responder.respond(_finding("first_seen.function", subject), 5)
        await rig.responder.respond(_finding("first_seen.function", subject), 6)  # revoked already
        jwt = Subject("principal", "jwt:corp:alice")
        await rig.responder.respond(_finding("first_seen.function", jwt), 8)

    rig = asyncio.run(_with_rig(tmp_path, policy, work))
    assert rig.keys.revoked == ["0123456789abcdef", "0123456789abcdef"]
    revokes = rig.records("response.revoke")
    outcomes = [(r["target"], r["outcome"], r["detail"]["alert_seq"]) for r in revokes]
    assert outcomes == [
        ("key:0123456789abcdef", "ok", 5),
        ("key:0123456789abcdef", "unchanged", 6),
        ("jwt:corp:alice", "skipped", 8),
    ]
    assert "new key" in rig.records("response.revoke")[0]["detail"]["undo"]


def test_response_that_does_not_fit_is_skipped_and_audited(tmp_path: Path) -> None:
    """A quarantine configured for a kind, found about a principal, is skipped with a reason."""
    policy = ResponsePolicy(parse_responses("baseline.call_rate=quarantine"))

    async def work(rig: Rig) -> None:
        subject = Subject("principal", "key:0123456789abcdef")
        await rig.responder.respond(_finding("baseline.call_rate", subject), 9)
        assert rig.quarantines.all() == []

    rig = asyncio.run(_with_rig(tmp_path, policy, work))
    [record] = rig.records("response.quarantine")
    assert record["outcome"] == "skipped"
    assert "principal" in record["detail"]["reason"]


def test_none_and_node_findings_do_nothing(tmp_path: Path) -> None:
    """`none` leaves no response; a throttle cannot answer a finding about the whole node
    (stuffing across many keys): skipped, and said so; an unknown kind about it: nothing."""
    policy = ResponsePolicy(parse_responses("egress.refused=none"))

    async def work(rig: Rig) -> None:
        await rig.responder.respond(_finding("egress.refused", Subject("function", "f")), 3)
        node = Subject("node", "node")
        await rig.responder.respond(_finding("auth.credential_stuffing", node), 4)
        await rig.responder.respond(_finding("some.future_kind", node), 4)

    rig = asyncio.run(_with_rig(tmp_path, policy, work))
    responses = [r for r in rig.log.tail(100) if r["action"].startswith("response.")]
    assert [(r["action"], r["target"], r["outcome"]) for r in responses] == [
        ("response.throttle", "node:node", "skipped")
    ]
    assert rig.quarantines.all() == [] and not rig.throttles


def test_a_failing_response_is_audited_and_does_not_raise(tmp_path: Path) -> None:
    """A revocation that fails leaves a `failed` record; the monitor is not disturbed."""
    policy = ResponsePolicy(parse_responses("first_seen.source=revoke"))

    async def work(rig: Rig) -> None:
        subject = Subject("principal", "key:0123456789abcdef")
        await rig.responder.respond(_finding("first_seen.source", subject), 11)

    rig = asyncio.run(_with_rig(tmp_path, policy, work, Keys(set(), fail=True)))
    [record] = rig.records("response.revoke")
    assert record["outcome"] == "failed"
    assert record["detail"] == {
        "alert_seq": 11,
        "kind": "first_seen.source",
        "error": "RuntimeError",
    }


class PendingKeys(Keys):
    """A revocation made whose record the writer could not append: it waits in the outbox."""

    async def __call__(self, key_id: str) -> bool:
        self.revoked.append(key_id)
        raise RecordPending("the change was made, but its audit record could not be appended")


def test_a_response_made_whose_record_is_pending_is_not_audited_as_failed(
    tmp_path: Path,
) -> None:
    """The response was made: its "ok" record comes from the outbox, so no `failed`
    record may contradict it."""
    policy = ResponsePolicy(parse_responses("first_seen.source=revoke"))
    keys = PendingKeys({"0123456789abcdef"})

    async def work(rig: Rig) -> None:
        subject = Subject("principal", "key:0123456789abcdef")
        await rig.responder.respond(_finding("first_seen.source", subject), 12)

    rig = asyncio.run(_with_rig(tmp_path, policy, work, keys))
    assert keys.revoked == ["0123456789abcdef"]
    assert rig.records("response.revoke") == []


def test_monitor_in_block_mode_responds_with_the_alerts_seq(tmp_path: Path) -> None:
    """Through the real engine: the response record names the seq of the alert it answers."""
    policy = ResponsePolicy(parse_responses("auth.credential_stuffing=throttle"))

    async def work(rig: Rig) -> None:
        # EveryDenial raises auth.test findings: an unknown kind, answered by its subject.
        monitor = Monitor(
            rig.log, [EveryDenial()], {"every_denial": "block"}, responder=rig.responder
        )
        monitor.attach(asyncio.get_running_loop())
        try:
            await rig.log.record(
                AuditEvent("anonymous", "auth.denied", "/v1/x", "denied", {"client": "10.0.0.7"})
            )
            for _ in range(100):  # the response follows the alert's commit
                await monitor.settle()
                if rig.records("response.throttle"):
                    break
                await asyncio.sleep(0.05)
        finally:
            await monitor.close()

    rig = asyncio.run(_with_rig(tmp_path, policy, work))
    [alert] = rig.records("alert.raised")
    [response] = rig.records("response.throttle")
    assert response["detail"]["alert_seq"] == alert["seq"]
    assert response["target"] == "source:10.0.0.7"
    assert response["seq"] > alert["seq"]


def test_node_settings_are_checked_whole() -> None:
    """The pairs DONJON_MONITOR_RESPONSES gave the settings are checked for kinds and fit."""
    with pytest.raises(ResponseConfigError, match="unknown finding kind"):
        ResponsePolicy.from_settings(MonitorSettings(responses={"egress.refusd": "none"}))
    with pytest.raises(ResponseConfigError, match="cannot answer"):
        ResponsePolicy.from_settings(MonitorSettings(responses={"egress.refused": "revoke"}))
    policy = ResponsePolicy.from_settings(MonitorSettings(responses={"egress.refused": "none"}))
    finding = _finding("egress.refused", Subject("function", "f"))
    assert policy.action(finding) == "none"


def test_an_admin_key_is_never_revoked_automatically(tmp_path: Path) -> None:
    """Even configured to revoke, an admin's key is left to a person (skipped, said why)."""
    engine = make_engine(tmp_path)
    policy = ResponsePolicy(parse_responses("first_seen.function=revoke"))
    keys = Keys({"0123456789abcdef"})

    async def work() -> AuditLog:
        log = make_log(engine)
        log.start()
        clock = FakeClock()
        responder = Responder(
            log,
            policy,
            Throttles(MemoryRateLimiter(clock), clock),
            Quarantines(QuarantineStore(engine), log),
            keys,
            protected=lambda key_id: key_id == "0123456789abcdef",
        )
        subject = Subject("principal", "key:0123456789abcdef")
        await responder.respond(_finding("first_seen.function", subject), 21)
        log.stop()
        return log

    log = asyncio.run(work())
    assert keys.revoked == []
    [record] = [r for r in log.tail(10) if r["action"] == "response.revoke"]
    assert record["outcome"] == "skipped" and "admin" in record["detail"]["reason"]


def test_a_call_killed_for_its_memory_quarantines_nothing_unless_configured() -> None:
    """A sandbox.violation from an OOM kill (its detail names the outcome) gets no response
    by default: the caller's event decides a handler's memory, and one request would stop
    the function for everyone. A runtime policy's violation is still quarantined, and an
    operator who configures sandbox.violation=quarantine gets it for kills too."""
    oom = Finding(
        "sandbox.violation",
        "sandbox_violation",
        "medium",
        Subject("function", "inflate"),
        "inflate@1: a call was killed for exceeding its memory (OOM)",
        (1,),
        1_000_000.0,
        {"outcome": "FunctionMemoryExceeded", "request_id": "r1"},
    )
    policy_block = Finding(
        "sandbox.violation",
        "sandbox_violation",
        "high",
        Subject("function", "inflate"),
        "inflate@1: runtime policy child_processes blocked /bin/sh",
        (2,),
        1_000_000.0,
        {"policy": "child_processes", "action": "policy.block", "request_id": "r2"},
    )
    assert ResponsePolicy().action(oom) == "none"
    assert ResponsePolicy().action(policy_block) == "quarantine"
    configured = ResponsePolicy(parse_responses("sandbox.violation=quarantine"))
    assert configured.action(oom) == "quarantine"


@pytest.mark.parametrize("kind", ["baseline.error_rate", "baseline.duration", "baseline.cost"])
@pytest.mark.parametrize("subject", [Subject("function", "svc@2"), Subject("principal", "key:k")])
def test_error_rate_duration_and_cost_findings_throttle_nothing_unless_configured(
    kind: str, subject: Subject
) -> None:
    """Error shares, durations and cost are moved by someone other than their subject: a
    caller moves a function's with its own events, a function's owner moves its callers'
    (a broken deploy failed every heavy caller's calls, and its key was throttled on every
    function). Alert only by default; an operator may configure a throttle."""
    assert ResponsePolicy().action(_finding(kind, subject)) == "none"
    configured = ResponsePolicy(parse_responses(f"{kind}=throttle"))
    assert configured.action(_finding(kind, subject)) == "throttle"
    assert ResponsePolicy().action(_finding(kind, subject)) == "none"


def test_a_public_burst_raises_call_rate_on_the_function_and_throttles_nothing() -> None:
    """Anonymous callers of a public trigger (no principal, no series of their own) that
    burst a quiet function raise baseline.call_rate on it, and no throttle: one would hold
    every caller of the function to 10 a minute for an hour (before: 16 calls did it). A
    key's own burst is still throttled; an operator may configure the function's."""
    detector, records = call_rate(), Records()
    now = 1_700_000_000.0
    for _ in range(40):
        for i in range(5):
            assert feed(detector, records.call(now + i, actor="public")) == []
        now += 60
    found = [f for i in range(20) for f in feed(detector, records.call(now + i, actor="public"))]
    assert [str(f.subject) for f in found] == ["function:f@1"]
    assert ResponsePolicy().action(found[0]) == "none"
    key = _finding("baseline.call_rate", Subject("principal", "key:k1"))
    assert ResponsePolicy().action(key) == "throttle"
    configured = ResponsePolicy(parse_responses("baseline.call_rate=throttle"))
    assert configured.action(found[0]) == "throttle"


def test_a_functions_owner_moving_its_callers_cost_throttles_no_caller() -> None:
    """A key calling a function at its usual rate, whose owner deploys a version that
    takes 1 GB and two seconds a call, raises baseline.cost on the key (the principal's
    series survives the deploy) and gets no throttle: the owner chose that cost, and the
    throttle would hold the key on every function (before: it did)."""
    detector, records = cost(), Records()
    now = 1_700_000_000.0
    for _ in range(40):
        for i in range(5):
            assert feed(detector, records.call(now + i, duration_ms=100.0)) == []
        now += 60
    feed(detector, records.event(now, "function.deploy", "f@2"))
    found = [
        f
        for i in range(5)
        for f in feed(detector, records.call(now + i, "f@2", duration_ms=2000.0, memory_mb=1024))
    ]
    assert [str(f.subject) for f in found] == ["principal:key:k1"]
    assert ResponsePolicy().action(found[0]) == "none"


def test_an_automatic_throttle_never_shortens_one_in_force(tmp_path: Path) -> None:
    """A subject throttled by hand for a month, then found by a detector: the hour the
    response would set does not replace the month (recorded `unchanged`, naming when the
    one in force ends); a throttle in force that ends sooner is replaced, as before."""
    policy = ResponsePolicy(throttle_count=5, throttle_period_s=60, throttle_s=3600)

    async def work(rig: Rig) -> None:
        now = rig.clock()
        month = Throttle(
            "principal", "key:0123456789abcdef", 5, 60, now, now + 30 * 86400, "?", None
        )
        rig.throttles.add(month)
        subject = Subject("principal", "key:0123456789abcdef")
        await rig.responder.respond(_finding("first_seen.function", subject), 5)
        assert rig.throttles.get("principal", "key:0123456789abcdef") == month
        brief = Throttle("function", "resize", 5, 60, now, now + 60, "?", None)
        rig.throttles.add(brief)
        configured = ResponsePolicy(parse_responses("baseline.call_rate=throttle"))
        rig.responder = Responder(
            rig.log, configured, rig.throttles, rig.quarantines, rig.keys, rig.clock
        )
        await rig.responder.respond(
            _finding("baseline.call_rate", Subject("function", "resize")), 7
        )
        replaced = rig.throttles.get("function", "resize")
        assert replaced is not None and replaced.alert_seq == 7

    rig = asyncio.run(_with_rig(tmp_path, policy, work))
    kept, extended = rig.records("response.throttle")
    assert (kept["outcome"], kept["detail"]["alert_seq"]) == ("unchanged", 5)
    assert kept["detail"]["until"] == pytest.approx(rig.clock() + 30 * 86400)
    assert (extended["outcome"], extended["target"]) == ("ok", "function:resize")
