"""Attacks on schedule triggers with a real node: a scheduled call that outlives the node's
stop, running or waiting for its slot; a manifest of thousands of schedules; and, at one
minute's fire, what held: whose identity a scheduled call has, a deleted or redeployed
function's old schedule, a function quota spent.

A scheduled call is not an HTTP request, so the server's shutdown did not wait for it, nor
end it after the grace period (DONJON_SHUTDOWN_GRACE_S): the scheduler's stop waited for
it to end by itself, up to its `timeout_s` (900 s at most). A node told to stop (SIGTERM)
while a long scheduled call ran did not stop; the supervisor (`donjon up` after the grace
and 30 s, systemd, Kubernetes) then killed it, and the call, which had run, had no audit
record. Now it gets the grace period, then its sandbox is ended and its record written.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest

from async_support import audit_tail
from crash_support import kill_node, records
from donjon.manifest.model import MAX_SCHEDULES
from harness import LiveNode, start_node
from sec_support import targz

pytestmark = pytest.mark.slow  # waits for a minute to start, a node of its own

SLEEPER = (
    "import time\ndef handler(event, context):\n    time.sleep(600)\n    return {'slept': True}\n"
)


EVERY_MINUTE = "triggers:\n  - schedule: '* * * * *'\n"


def _function(root: Path, name: str, code: str, extra: str = "", timeout_s: int = 10) -> Path:
    fn = root / name
    fn.mkdir(exist_ok=True)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: {timeout_s}\n{extra}"
    )
    (fn / "main.py").write_text(code)
    return fn


def _stop(node: LiveNode) -> None:
    """SIGTERM the node; it must exit well within 90 s (its grace is 1 s), else it is
    killed and the test fails."""
    node.proc.terminate()
    try:
        node.proc.wait(90)
    except subprocess.TimeoutExpired:
        kill_node(node)
        pytest.fail("the node did not stop while a scheduled call ran or waited")
    node.stop()


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
        node.deploy(_function(tmp_path, "sched-sleeper", SLEEPER, EVERY_MINUTE, timeout_s=900))
        _sleep_past_the_next_minute(5)  # the call has started and sleeps
        _stop(node)  # grace 1 s; the old node waited out the call's 600 s
    finally:
        if node.proc.poll() is None:
            kill_node(node)
    calls = [r for r in records(node, "function.invoke") if r["actor"] == "schedule"]
    assert len(calls) == 1, calls
    assert calls[0]["outcome"] != "ok", calls[0]


def test_a_manifest_of_thousands_of_schedules_is_refused_at_deploy(node: LiveNode) -> None:
    """2,000 schedule triggers and more fit in a 64 KiB manifest: each parsed was ~6 KB of
    the node's memory for as long as the function was deployed (15 MB a function, 15 GB
    for a developer's 1,000), and half a second of the deploy's CPU. At most MAX_SCHEDULES are
    taken (one expression's lists name any set of minutes); more is refused, with why."""
    lines = [f"  - schedule: '{i % 60} {i // 60 % 24} * * *'" for i in range(2000)]
    manifest = "name: sched-many\nhandler: main.handler\ntriggers:\n" + "\n".join(lines)
    archive = targz(
        {
            "donjon.yaml": manifest.encode() + b"\n",
            "main.py": b"def handler(event, context):\n    return None\n",
        }
    )
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
        assert r.status_code == 422, r.text
        assert f"at most {MAX_SCHEDULES} schedule triggers" in r.text, r.text
        assert c.get("/v1/functions/sched-many").status_code == 404


WHO = (
    "import json\n"
    "def handler(event, context):\n"
    "    try:\n"
    "        context.invoke('sched-target', {})\n"
    "        called = 'called'\n"
    "    except Exception as e:\n"
    "        called = type(e).__name__\n"
    "    print('WHO', json.dumps([context.principal, event['trigger'], called]))\n"
)


def test_at_a_fire_the_call_is_no_one_and_old_schedules_are_gone(
    node: LiveNode, tmp_path: Path
) -> None:
    """At one minute's fire: the scheduled call has no principal and no grant it was not
    given (its context.invoke of a function it was not granted is refused); a function
    deleted, or redeployed without its schedule, is not called; a function whose quota is
    spent is refused and audited, its handler never run."""
    quiet = "def handler(event, context):\n    print('RAN')\n"
    if dt.datetime.now(dt.UTC).second > 40:  # the deploys below all before one boundary
        _sleep_past_the_next_minute(1)
    node.deploy(_function(tmp_path, "sched-target", quiet))
    node.deploy(_function(tmp_path, "sched-who", WHO, EVERY_MINUTE))
    node.deploy(_function(tmp_path, "sched-gone", quiet, EVERY_MINUTE))
    node.deploy(_function(tmp_path, "sched-changed", quiet, EVERY_MINUTE))
    node.deploy(_function(tmp_path, "sched-changed", quiet + "# v2\n"))
    node.deploy(_function(tmp_path, "sched-spent", quiet, EVERY_MINUTE))
    with node.client() as c:
        assert c.delete("/v1/functions/sched-gone").status_code in (200, 204)
        r = c.put("/v1/quotas/function:sched-spent", json={"invocations": 0})
        assert r.status_code in (200, 201), r.text
    _sleep_past_the_next_minute(8)
    tail = audit_tail(node)
    called = {
        r["target"].split("@")[0]: r
        for r in tail
        if r["action"] == "function.invoke" and r["actor"] == "schedule"
    }
    assert "sched-gone" not in called
    assert "sched-changed" not in called
    assert "sched-spent" not in called
    assert called["sched-who"]["outcome"] == "ok", called["sched-who"]
    refused = [
        r for r in tail if r["action"].startswith("quota.") and "sched-spent" in json.dumps(r)
    ]
    assert refused, "the spent quota's refusal is not audited"
    with node.client() as c:
        who = c.get("/v1/functions/sched-who/logs", params={"n": 5}).json()
        ran = c.get("/v1/functions/sched-spent/logs", params={"n": 5}).json()
    said = [line for row in who for line in row["output"].splitlines() if line.startswith("WHO")]
    assert said, who
    principal, trigger, invoked = json.loads(said[-1][4:])
    assert principal in (None, ""), principal
    assert trigger == "schedule"
    assert invoked != "called", invoked
    assert not any("RAN" in row["output"] for row in ran), ran


def test_a_scheduled_call_waiting_for_a_slot_at_stop_does_not_start_after_it(
    tmp_path: Path,
) -> None:
    """`limits.concurrency: 1` and a call that sleeps: the next minute's call waits for the
    slot. SIGTERM then: the node ends the running call, and the waiting one must not take
    the freed slot and run on in a sandbox of its own after the node ended them all (both
    end FunctionCrashed, recorded, and the node exits)."""
    extra = {"DONJON_SHUTDOWN_GRACE_S": "1", "DONJON_MAX_QUEUE_WAIT_S": "60"}
    node = start_node(tmp_path / "node", extra, measured=False)
    try:
        limits = EVERY_MINUTE + "limits: {concurrency: 1}\n"
        node.deploy(_function(tmp_path, "sched-queued", SLEEPER, limits, timeout_s=900))
        _sleep_past_the_next_minute(2)  # the first call sleeps
        _sleep_past_the_next_minute(5)  # the second waits for its slot
        _stop(node)
    finally:
        if node.proc.poll() is None:
            kill_node(node)
    calls = [r for r in records(node, "function.invoke") if r["actor"] == "schedule"]
    assert calls, "no scheduled call was recorded"
    assert all(r["outcome"] != "ok" for r in calls), calls
