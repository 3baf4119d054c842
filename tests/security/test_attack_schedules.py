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

Schedules fire at whole minutes only, so the three attacks that wait for a fire share
their minutes: one module fixture (`armed`) deploys all their functions first (the
fire's on the shared node, then a node of its own for each attack on a node's stop), and
each test then waits for the minute boundaries after its own deploys. Run one after
the other, each waiting for its own boundaries, they took 225 s of a CI run.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from async_support import audit_tail
from crash_support import kill_node, records
from donjon.manifest.model import MAX_SCHEDULES
from harness import LiveNode, start_node
from sec_support import targz

pytestmark = pytest.mark.slow  # waits for minute boundaries, nodes of their own

SLEEPER = (
    "import time\ndef handler(event, context):\n    time.sleep(600)\n    return {'slept': True}\n"
)


EVERY_MINUTE = "triggers:\n  - schedule: '* * * * *'\n"

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
QUIET = "def handler(event, context):\n    print('RAN')\n"


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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _next_minute() -> dt.datetime:
    """The next whole minute (UTC), when a schedule fires."""
    return _now().replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def _sleep_until(moment: dt.datetime) -> None:
    time.sleep(max(0.0, (moment - _now()).total_seconds()))


@dataclass
class Armed:
    """The deployed functions of the attacks that wait for a fire, and the first minute
    each can fire at (the boundary after its deploys)."""

    fire: dt.datetime  # the shared node's sched-* functions
    running: LiveNode  # sched-sleeper, every minute, a 600 s call
    running_fire: dt.datetime
    queued: LiveNode  # sched-queued, every minute, a 600 s call, concurrency 1
    queued_fire: dt.datetime


def _deploy_the_fires_functions(node: LiveNode, root: Path) -> dt.datetime:
    """The functions of `test_at_a_fire_...` deployed (one deleted, one redeployed without
    its schedule, one's quota spent), all before one boundary: that boundary."""
    if _now().second > 40:  # the deploys below all before one boundary
        _sleep_until(_next_minute() + dt.timedelta(seconds=1))
    node.deploy(_function(root, "sched-target", QUIET))
    node.deploy(_function(root, "sched-who", WHO, EVERY_MINUTE))
    node.deploy(_function(root, "sched-gone", QUIET, EVERY_MINUTE))
    node.deploy(_function(root, "sched-changed", QUIET, EVERY_MINUTE))
    node.deploy(_function(root, "sched-changed", QUIET + "# v2\n"))
    node.deploy(_function(root, "sched-spent", QUIET, EVERY_MINUTE))
    with node.client() as c:
        assert c.delete("/v1/functions/sched-gone").status_code in (200, 204)
        r = c.put("/v1/quotas/function:sched-spent", json={"invocations": 0})
        assert r.status_code in (200, 201), r.text
    return _next_minute()


@pytest.fixture(scope="module")
def armed(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Armed]:
    """The fire's functions on the shared node; then a node (grace 1 s) with a sleeper
    called every minute, and one whose sleeper has `limits.concurrency: 1` (its next
    minute's call waits for the slot, up to 60 s)."""
    root = tmp_path_factory.mktemp("schedules")
    fire = _deploy_the_fires_functions(node, root)
    started: list[LiveNode] = []
    try:
        running = start_node(root / "running", {"DONJON_SHUTDOWN_GRACE_S": "1"}, measured=False)
        started.append(running)
        running.deploy(_function(root, "sched-sleeper", SLEEPER, EVERY_MINUTE, timeout_s=900))
        running_fire = _next_minute()
        extra = {"DONJON_SHUTDOWN_GRACE_S": "1", "DONJON_MAX_QUEUE_WAIT_S": "60"}
        queued = start_node(root / "queued", extra, measured=False)
        started.append(queued)
        limits = EVERY_MINUTE + "limits: {concurrency: 1}\n"
        queued.deploy(_function(root, "sched-queued", SLEEPER, limits, timeout_s=900))
        queued_fire = _next_minute()
        yield Armed(fire, running, running_fire, queued, queued_fire)
    finally:
        for live in started:
            if live.proc.poll() is None:
                kill_node(live)


def test_a_scheduled_call_running_at_stop_gets_the_grace_then_is_ended_and_audited(
    armed: Armed,
) -> None:
    """SIGTERM while a scheduled call sleeps: the node ends it after its grace period, writes
    its record and exits, as it does for calls over HTTP and async deliveries."""
    node = armed.running
    _sleep_until(armed.running_fire + dt.timedelta(seconds=5))  # the call started, sleeps
    _stop(node)  # grace 1 s; the old node waited out the call's 600 s
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


def test_at_a_fire_the_call_is_no_one_and_old_schedules_are_gone(
    node: LiveNode, armed: Armed
) -> None:
    """At one minute's fire: the scheduled call has no principal and no grant it was not
    given (its context.invoke of a function it was not granted is refused); a function
    deleted, or redeployed without its schedule, is not called; a function whose quota is
    spent is refused and audited, its handler never run."""
    _sleep_until(armed.fire + dt.timedelta(seconds=8))
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
    armed: Armed,
) -> None:
    """`limits.concurrency: 1` and a call that sleeps: the next minute's call waits for the
    slot. SIGTERM then: the node ends the running call, and the waiting one must not take
    the freed slot and run on in a sandbox of its own after the node ended them all (both
    end FunctionCrashed, recorded, and the node exits)."""
    node = armed.queued
    # The first call sleeps from queued_fire; the second waits for its slot from a minute on.
    _sleep_until(armed.queued_fire + dt.timedelta(minutes=1, seconds=5))
    _stop(node)
    calls = [r for r in records(node, "function.invoke") if r["actor"] == "schedule"]
    assert calls, "no scheduled call was recorded"
    assert all(r["outcome"] != "ok" for r in calls), calls
