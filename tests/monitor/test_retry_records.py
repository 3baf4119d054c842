"""An async delivery's retry is the platform's doing (its function's retry policy), not its
caller's: its `function.invoke` record says which attempt it is, and the monitor's
baselines leave it out of the caller's (a failing function's retries got each caller's
key throttled for a burst of calls it never made)."""

from __future__ import annotations

from pathlib import Path

from async_support import audit_tail, bundle, invoke_async, wait_for
from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.monitor.calls import read_call
from harness import LiveNode

FAILS = "def handler(event, context):\n    raise RuntimeError('always')\n"


def _call_record(attempt: int | None) -> CommittedRecord:
    detail: dict[str, object] = {"request_id": "r", "duration_ms": 1.0, "memory_mb": 64}
    if attempt is not None:
        detail["attempt"] = attempt
    event = AuditEvent("key:0123456789abcdef", "function.invoke", "f@1", "RuntimeError", detail)
    return CommittedRecord(7, 1.0, event)


def _caller(attempt: int | None) -> str | None:
    call = read_call(_call_record(attempt))
    assert call is not None and call.function == "f"  # a call of the function, whoever's
    return call.principal


def test_a_retry_is_not_counted_as_its_callers_call() -> None:
    assert _caller(None) == "key:0123456789abcdef"  # a sync call
    assert _caller(1) == "key:0123456789abcdef"  # a delivery's first attempt
    assert _caller(2) is None


def test_each_attempt_of_a_delivery_is_recorded_with_its_number(
    node: LiveNode, tmp_path: Path
) -> None:
    node.deploy(bundle(tmp_path, "retry-numbered", FAILS, "retry: {attempts: 2, backoff_s: 1}\n"))
    r = invoke_async(node, "retry-numbered", {})
    assert r.status_code == 202, r.text
    assert wait_for(node, r.json()["invocation_id"])["status"] == "dead"
    attempts = [
        rec["detail"].get("attempt")
        for rec in audit_tail(node)
        if rec["action"] == "function.invoke" and rec["target"].startswith("retry-numbered@")
    ]
    assert attempts == [1, 2], attempts
