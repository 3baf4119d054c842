"""First-seen pairs on a fake clock: functions and sources a principal never used."""

from __future__ import annotations

from typing import Any

import pytest

from baseline_support import Records, feed
from donjon.audit.log import AuditEvent
from donjon.monitor.findings import Subject
from donjon.monitor.firstseen import FirstSeenDetector
from donjon.monitor.robust import BaselineError

T0 = 1_700_000_000.0
HOUR = 3600.0


def _learned(records: Records) -> FirstSeenDetector:
    """k1 called f and g from 192.0.2.0/24 during its hour of learning."""
    detector = FirstSeenDetector(HOUR)
    for i, target in enumerate(["f@1", "g@3", "f@1"]):
        assert feed(detector, records.call(T0 + i * 60, target)) == []
    return detector


def test_a_key_calling_a_function_it_never_called_is_found() -> None:
    """After its learning window, the key's first call of another function is a finding."""
    records = Records()
    detector = _learned(records)
    call = records.call(T0 + 2 * HOUR, "h@1")
    (finding,) = feed(detector, call)
    assert finding.kind == "first_seen.function" and finding.severity == "high"
    assert finding.subject == Subject("principal", "key:k1")
    assert finding.evidence == (call.seq,)
    assert finding.detail["function"] == "h" and finding.detail["learned"] == ["f", "g"]


def test_learned_pairs_and_other_versions_are_quiet() -> None:
    """A function the key called before, at any version, from its network, is no finding."""
    records = Records()
    detector = _learned(records)
    assert feed(detector, records.call(T0 + 2 * HOUR, "f@7", client="192.0.2.99")) == []


def test_a_new_source_network_is_found() -> None:
    """A call from a network the key never used is `first_seen.source`."""
    records = Records()
    detector = _learned(records)
    (finding,) = feed(detector, records.call(T0 + 2 * HOUR, "f@1", client="198.51.100.7"))
    assert finding.kind == "first_seen.source" and finding.detail["source"] == "198.51.100.0/24"


def test_ipv6_sources_compare_by_64() -> None:
    """Two addresses of one IPv6 /64 are one source."""
    records = Records()
    detector = FirstSeenDetector(HOUR)
    feed(detector, records.call(T0, client="2001:db8:1:2::1"))
    assert feed(detector, records.call(T0 + 2 * HOUR, client="2001:db8:1:2::ffff")) == []
    (finding,) = feed(detector, records.call(T0 + 2 * HOUR, client="2001:db8:1:3::1"))
    assert finding.detail["source"] == "2001:db8:1:3::/64"


def test_a_flagged_pair_is_raised_once_and_never_learned() -> None:
    """The attacker's pair raises one finding; it does not join the key's profile."""
    records = Records()
    detector = _learned(records)
    assert len(feed(detector, records.call(T0 + 2 * HOUR, "h@1"))) == 1
    assert feed(detector, records.call(T0 + 2 * HOUR + 1, "h@1")) == []
    profile = detector.profiles.get("key:k1")
    assert profile is not None and sorted(profile.functions.known.keys()) == ["f", "g"]


def test_a_new_key_learns_from_its_creation() -> None:
    """A key created after the node's start learns for its own window, from `key.create`."""
    records = Records()
    detector = _learned(records)
    feed(detector, records.event(T0 + 10 * HOUR, "key.create", "key:k2"))
    assert feed(detector, records.call(T0 + 10.5 * HOUR, "f@1", actor="key:k2")) == []
    (finding,) = feed(detector, records.call(T0 + 11.5 * HOUR, "g@3", actor="key:k2"))
    assert finding.detail["origin_seq"] == 4


def test_a_dormant_key_is_judged_on_its_first_call() -> None:
    """A key the node knew before it started, first used after the window, is judged."""
    records = Records()
    detector = _learned(records)
    found = feed(detector, records.call(T0 + 5 * HOUR, "f@1", actor="key:dormant"))
    assert {f.kind for f in found} == {"first_seen.function", "first_seen.source"}


def test_a_jwt_subject_learns_from_its_first_call() -> None:
    """A JWT principal (users come and go) starts its window at its first call."""
    records = Records()
    detector = _learned(records)
    assert feed(detector, records.call(T0 + 5 * HOUR, "f@1", actor="jwt:iss:alice")) == []


def test_public_scheduled_and_event_source_calls_have_no_profile() -> None:
    """Anyone may call a public trigger, and every tenant's webhooks, storage and database
    events are recorded under their trigger's kind: no principal, no pairs."""
    records = Records()
    detector = _learned(records)
    for actor in ("public", "schedule", "webhook", "s3", "postgres"):
        assert feed(detector, records.call(T0 + 5 * HOUR, "z@1", actor=actor)) == []
    assert len(detector.profiles) == 1


def test_profiles_and_pairs_are_capped() -> None:
    """Memory is bounded: principals and the pairs of each."""
    records = Records()
    detector = FirstSeenDetector(HOUR, max_principals=10, max_pairs=5)
    for i in range(100):
        feed(
            detector, records.call(T0 + i, f"f{i}@1", actor=f"key:k{i % 20}", client=f"10.{i}.0.1")
        )
    assert len(detector.profiles) == 10
    for key in detector.profiles:
        profile = detector.profiles.get(key)
        assert profile is not None
        assert len(profile.functions.known) <= 5 and len(profile.sources.known) <= 5


@pytest.mark.parametrize("learning_s", [-1.0, float("inf"), float("nan")])
def test_bad_learning_window_is_refused(learning_s: float) -> None:
    """A learning window that is not a duration is an error with a hint."""
    with pytest.raises(BaselineError, match="learning window"):
        FirstSeenDetector(learning_s)


def _queued(records: Records, now: float, client: str | None, actor: str = "key:k1") -> Any:
    """An `invocation.enqueue` record of an async invoke of f (gateway/async_invoke.py)."""
    detail: dict[str, Any] = {"invocation_id": "i", "trigger": "invoke", "request_id": "r"}
    if client is not None:
        detail["client"] = client
    return records.record(now, AuditEvent(actor, "invocation.enqueue", "f", "ok", detail))


def test_an_async_call_from_a_new_network_is_found() -> None:
    """A call queued (Lambda Event, Prefer: respond-async) from a network the key never
    used is `first_seen.source` at once, as a sync call is: its delivery has no source."""
    records = Records()
    detector = _learned(records)
    assert feed(detector, _queued(records, T0 + 2 * HOUR, "192.0.2.77")) == []
    queued = _queued(records, T0 + 2 * HOUR, "198.51.100.7")
    (finding,) = feed(detector, queued)
    assert finding.kind == "first_seen.source" and finding.evidence == (queued.seq,)
    assert finding.subject == Subject("principal", "key:k1")
    # A trigger's enqueue (a webhook: no caller, no address) has no profile.
    assert feed(detector, _queued(records, T0 + 2 * HOUR, None, actor="webhook")) == []
