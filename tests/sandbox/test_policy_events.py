"""The host's side of runtime policies: the watching filter and what it trusts of reports."""

from __future__ import annotations

from donjon.manifest import PolicyMode, RuntimePolicies
from donjon.sandbox import compile_filters
from donjon.sandbox.policy_events import CallPolicyEvents, PolicyEvent, from_control, from_head


def test_watching_filter_is_compiled_beside_the_call_filter() -> None:
    """call_watch is a whole BPF program of its own; the process calls and seccomp(2) are named."""
    filters = compile_filters()
    assert filters.call_watch and len(filters.call_watch) % 8 == 0
    assert filters.call_watch != filters.call
    assert {"fork", "vfork", "clone", "execve", "execveat"} <= set(filters.process_calls.values())
    assert filters.seccomp_nr > 0


def test_supervisor_report_takes_its_mode_from_the_function_not_the_message() -> None:
    """A `policy` message saying "alert" for a blocking function is recorded as a block."""
    msg = {"op": "policy", "id": 1, "policy": "child_processes", "action": "alert", "seen": "fork"}
    assert from_control(msg, RuntimePolicies()) == PolicyEvent("child_processes", "block", "fork")
    allowed = RuntimePolicies(child_processes=PolicyMode.ALLOW)
    assert from_control(msg, allowed) is None
    assert from_control({**msg, "policy": "tmp_write"}, RuntimePolicies()) is None


def test_reply_head_reports_count_only_for_policies_on_alert() -> None:
    """A function writing its own reply head can add alerts only where it is on alert."""
    head = {"policy": {"tmp_write": "open /tmp/x for writing", "read_own_code": "open /fn/a"}}
    assert from_head(head, RuntimePolicies()) == []
    alerting = RuntimePolicies(tmp_write=PolicyMode.ALERT, read_own_code=PolicyMode.BLOCK)
    assert from_head(head, alerting) == [
        PolicyEvent("tmp_write", "alert", "open /tmp/x for writing")
    ]
    assert from_head({"policy": ["tmp_write"]}, alerting) == []
    assert from_head({"policy": {"tmp_write": "x" * 5000}}, alerting)[0].seen == "x" * 200


def test_events_are_kept_per_call_and_bounded() -> None:
    """Reports of a call not in flight are dropped; a call keeps a few at most."""
    events = CallPolicyEvents(RuntimePolicies())
    msg = {"op": "policy", "id": 7, "policy": "child_processes", "seen": "clone"}
    events.on_message(msg)  # not in flight: dropped
    events.open(7)
    for _ in range(10):
        events.on_message(msg)
    assert len(events.of(7, None)) == 4
    events.close(7)
    assert events.of(7, None) == ()
