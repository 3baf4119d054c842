"""Attacks on schedule triggers with a real node: a scheduled call that outlives the node's
stop.

A scheduled call is not an HTTP request, so the server's shutdown did not wait for it, nor
end it after the grace period (DONJON_SHUTDOWN_GRACE_S): the scheduler's stop waited for
it to end by itself, up to its `timeout_s` (900 s at most). A node told to stop (SIGTERM)
while a long scheduled call ran did not stop; the supervisor (`donjon up` after the grace
and 30 s, systemd, Kubernetes) then killed it, and the call, which had run, had no audit
record. Now it gets the grace period, then its sandbox is ended and its record written.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import pytest

from crash_support import kill_node, records
from harness import start_node

pytestmark = pytest.mark.slow  # waits for a minute to start, a node of its own

SLEEPER = (
    "import time\ndef handler(event, context):\n    time.sleep(600)\n    return {'slept': True}\n"
)


def _sleep_past_the_next_minute(seconds: float) -> None:
    """Sleep until `seconds` past the next whole minute (UTC), when a schedule fires."""
    now = dt.datetime.now(dt.UTC)
    target = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1, seconds=seconds)
    time.sleep((target - now).total_seconds())


def test_a_scheduled_call_running_at_stop_gets_the_grace_then_is_ended_and_audited(
    tmp_path: Path,
) -> None:
    """SIGTERM while a scheduled call sleeps: the node ends it after its grace period, writes
    its record and exits, as it does for calls over HTTP and async deliveries."""
    node = start_node(tmp_path / "node", {"DONJON_SHUTDOWN_GRACE_S": "1"}, measured=False)
    try:
        fn = tmp_path / "sched-sleeper"
        fn.mkdir()
        (fn / "donjon.yaml").write_text(
            "name: sched-sleeper\nhandler: main.handler\ntimeout_s: 900\n"
            "triggers:\n  - schedule: '* * * * *'\n"
        )
        (fn / "main.py").write_text(SLEEPER)
        node.deploy(fn)
        _sleep_past_the_next_minute(5)  # the call has started and sleeps
        node.proc.terminate()
        try:
            node.proc.wait(90)  # grace 1 s; the old node waited out the call's 600 s
        except subprocess.TimeoutExpired:
            kill_node(node)
            pytest.fail("the node did not stop while a scheduled call ran")
        node.stop()
    finally:
        if node.proc.poll() is None:
            kill_node(node)
    calls = [r for r in records(node, "function.invoke") if r["actor"] == "schedule"]
    assert len(calls) == 1, calls
    assert calls[0]["outcome"] != "ok", calls[0]
