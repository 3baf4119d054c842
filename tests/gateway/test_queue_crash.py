"""Issue 16, point 6: SIGKILL of a node with async invocations queued and in flight.

A real `donjon serve` (2 queue workers, 3 s leases) has ten slow invocations queued; it is
killed with SIGKILL while some run, and started again on the same data dir. Each one must
end (none lost), and none may run to completion more than once, except in the stated
window: a call the killed node finished whose outcome it had not yet recorded.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from async_support import ENDED, bundle, invoke_async, wait_for
from harness import LiveNode, start_node

QUEUE_ENV = {"DONJON_QUEUE_LEASE_S": "3", "DONJON_QUEUE_WORKERS": "2"}
SLOW = (
    "import time\n"
    "def handler(event, context):\n"
    "    print('RUN', context.event_id)\n"
    "    time.sleep(event['sleep'])\n"
    "    return {'n': event['n']}\n"
)
COUNT = 10


def _statuses(node: LiveNode, ids: list[str]) -> dict[str, str]:
    with node.client() as c:
        return {i: c.get(f"/v1/invocations/{i}").json()["status"] for i in ids}


def _completed_runs(node: LiveNode) -> list[dict[str, Any]]:
    with node.client() as c:
        entries: list[dict[str, Any]] = c.get(
            "/v1/functions/crash-slow/logs", params={"n": 500}
        ).json()
    return [e for e in entries if e["outcome"] == "ok"]


@pytest.mark.slow
def test_sigkill_with_invocations_queued_and_in_flight_loses_none(tmp_path: Path) -> None:
    """Every invocation ends after the kill and a restart; none runs twice past the window."""
    node = start_node(tmp_path, QUEUE_ENV)
    try:
        node.deploy(
            bundle(
                tmp_path / "src",
                "crash-slow",
                SLOW,
                "timeout_s: 30\nretry: {attempts: 3, backoff_s: 0.2, max_age_s: 600}\n",
            )
        )
        ids = []
        for n in range(COUNT):
            r = invoke_async(node, "crash-slow", {"n": n, "sleep": 2.0})
            assert r.status_code == 202, r.text
            ids.append(r.json()["invocation_id"])
        deadline = time.monotonic() + 60
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = _statuses(node, ids)
            if "running" in states.values():
                break
            time.sleep(0.05)
        running = [i for i, s in states.items() if s == "running"]
        assert running, f"nothing ran before the kill: {states}"
        assert "queued" in states.values(), "nothing was still queued: not the test"
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(30)
        killed_at = time.time()
        node.stop()  # closes its log; the process is gone already
        node.serve_again(QUEUE_ENV)

        ended = {i: wait_for(node, i, ENDED) for i in ids}
        assert {e["status"] for e in ended.values()} == {"succeeded"}, ended  # none lost
        assert [ended[i]["result"] for i in ids] == [{"n": n} for n in range(COUNT)]
        # The calls cut by the kill were claimed again once their leases expired.
        assert all(ended[i]["attempts"] == 2 for i in running), [ended[i] for i in running]

        runs = _completed_runs(node)
        for invocation_id in ids:
            mine = [r for r in runs if f"RUN {invocation_id}" in r["output"]]
            assert 1 <= len(mine) <= 2, (invocation_id, mine)
            if len(mine) == 2:  # the duplicate window: finished by the killed node, unrecorded
                assert min(r["ts"] for r in mine) < killed_at, (invocation_id, mine)
    finally:
        node.stop()


@pytest.mark.slow
def test_sigterm_queues_calls_in_flight_again_without_charging_them(tmp_path: Path) -> None:
    """A node told to stop ends a delivery still running after the grace period; it is
    queued again with its attempt given back, and runs on the next start."""
    env = {**QUEUE_ENV, "DONJON_SHUTDOWN_GRACE_S": "0.5"}
    node = start_node(tmp_path, env)
    try:
        node.deploy(
            bundle(
                tmp_path / "src",
                "crash-slow",
                SLOW,
                "timeout_s: 30\nretry: {attempts: 1, backoff_s: 0.2, max_age_s: 600}\n",
            )
        )
        r = invoke_async(node, "crash-slow", {"n": 1, "sleep": 4.0})
        assert r.status_code == 202, r.text
        invocation_id = r.json()["invocation_id"]
        wait_for(node, invocation_id, ("running",))
        node.stop()  # SIGTERM: the grace period, then the sandbox is ended
        assert node.proc.returncode == 0
        node.serve_again(env)
        done = wait_for(node, invocation_id)
        # One attempt allowed, and it was not used up by the node stopping.
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1
        assert done["result"] == {"n": 1}
        with node.client() as c:
            entries = c.get("/v1/functions/crash-slow/logs").json()
        # This node's only function ran twice: the call the stop cut short, then the rerun.
        outcomes = [e["outcome"] for e in sorted(entries, key=lambda e: e["ts"])]
        assert len(outcomes) == 2, entries
        assert outcomes[0] != "ok"
        assert outcomes[1] == "ok"
    finally:
        node.stop()


SINK = (
    "def handler(event, context):\n"
    "    print('FOR', event['requestContext']['requestId'])\n"
    "    return None\n"
)
DEAD_COUNT = 150


def _dead(node: LiveNode) -> int:
    with node.client() as c:
        return len(c.get("/v1/dlq", params={"function": "crash-src"}).json())


def _told(node: LiveNode) -> set[str]:
    """The original invocations the on_failure destination was handed, by its logs."""
    with node.client() as c:
        entries = c.get("/v1/functions/crash-sink/logs", params={"n": 500}).json()
    return {
        line.split()[1]
        for e in entries
        for line in e["output"].splitlines()
        if line.startswith("FOR ")
    }


@pytest.mark.slow
def test_sigkill_while_events_are_dead_lettered_loses_no_destination_record(
    tmp_path: Path,
) -> None:
    """Every event dead-lettered reaches its on_failure destination, though the node is
    SIGKILLed three times while it dead-letters them (before, a kill between the outcome
    and the destination's enqueue lost that record for good)."""
    node = start_node(tmp_path, QUEUE_ENV)
    try:
        node.deploy(bundle(tmp_path / "src", "crash-sink", SINK, "timeout_s: 10\n"))
        node.deploy(
            bundle(
                tmp_path / "src",
                "crash-src",
                "def handler(event, context):\n    raise ValueError('no')\n",
                "retry: {attempts: 1}\ndestinations: {on_failure: crash-sink}\n",
            )
        )
        ids = []
        for n in range(DEAD_COUNT):
            r = invoke_async(node, "crash-src", {"n": n})
            assert r.status_code == 202, r.text
            ids.append(r.json()["invocation_id"])
        for kill in range(3):
            seen = _dead(node)
            deadline = time.monotonic() + 120
            while _dead(node) < seen + 15 and time.monotonic() < deadline:
                time.sleep(0.02)
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(30)
            node.stop()
            node.serve_again(QUEUE_ENV)
            print(f"kill {kill + 1}: {seen} dead before")
        assert {wait_for(node, i)["status"] for i in ids} == {"dead"}
        told: set[str] = set()
        deadline = time.monotonic() + 120
        while not set(ids) <= told and time.monotonic() < deadline:
            told = _told(node)
            time.sleep(0.5)
        missing = set(ids) - told
        assert not missing, f"{len(missing)} dead event(s) never reached on_failure: {missing}"
    finally:
        node.stop()
