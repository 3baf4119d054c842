"""Accepted input and automatic changes across a SIGKILL of the node (tests/crash_support.py
kills it): what a sender was not told was taken can be sent again and is then taken, and
a change the node made by itself is kept only with its audit record.

test_attack_admin_crash.py and test_attack_admin_commit.py attack the admin API's changes;
these attack what they leave out: a webhook delivery killed between its replay-cache row
and its queued event, and the monitor's automatic responses killed at their commit.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import bundle, invoke_async, wait_for
from crash_support import (
    FAILING,
    CommitWatch,
    answered,
    audit_writers,
    audited,
    query,
    records,
    send,
    verify_intact,
    writer_back,
)
from donjon.audit.remote import RESTARTS
from harness import LiveNode, fresh_source, start_node
from triggers.webhook_signing import github_headers
from webhook_support import HOOKS, deploy_hooks, post_hook, wait_for_delivery

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose

#: Kills a test makes (each one of the node or of its audit writer). Fewer than the audit
#: writer's restarts a minute (RESTARTS, 5): past them the node refuses every call until
#: it is restarted, which is what the writer-killing tests would then see.
TRIES = 3
#: Deliveries killed at their replay-cache row, at most (each costs a restart of the node,
#: so RESTARTS does not bound them; the kill follows a poll of the database, so under load
#: it can land past the window: a suite run missed it three times in a row).
DELIVERY_TRIES = 6
assert TRIES < RESTARTS


def _more_than(count: int) -> Callable[[list[Any]], bool]:
    """Whether a count read by a CommitWatch grew past `count`."""
    return lambda rows: bool(rows[0][0] > count)


def _queued(node: LiveNode, delivery: str) -> int:
    rows = query(node, "SELECT count(*) FROM invocations WHERE delivery_id = ?", delivery)
    return int(rows[0][0])


def test_webhook_delivery_killed_after_its_replay_row_is_taken_when_sent_again(
    tmp_path: Path,
) -> None:
    """A delivery killed once its id is in the replay cache, before its event is queued,
    was never answered 202: the sender's retry of it is taken (202) and runs."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        secret = deploy_hooks(node, tmp_path)["github"]
        name, path, _ = HOOKS["github"]
        hit = False
        for n in range(DELIVERY_TRIES):
            delivery = f"crash-delivery-{n}"
            body = json.dumps({"n": n}).encode()
            headers = github_headers(secret, body, delivery)
            # (its row's key is not the delivery id: a github delivery does not sign it)
            sql = "SELECT count(*) FROM webhook_deliveries"
            held = query(node, sql)[0][0]
            with CommitWatch(node, sql, _more_than(held)) as watch:
                answer = send(node, "POST", f"/hooks{path}", content=body, headers=headers)
                assert watch.fired.wait(60)
            node.serve_again(measured=False)
            if _queued(node, delivery):
                continue  # killed after its event was queued: the window was missed
            hit = True
            assert answer is None or answer.status_code != 202, answer.text
            retry = post_hook(node, path, body, headers)
            assert retry.status_code == 202, (delivery, retry.status_code, retry.text)
            assert wait_for_delivery(node, name, delivery)["body"]
            break
        assert hit, f"each of {DELIVERY_TRIES} kills came after the event was queued"
        verify_intact(node)
    finally:
        node.stop()


#: A node whose credential-stuffing detector throttles the source (tests/monitor's).
BLOCKING = {
    "DONJON_MONITOR_MODES": "auth_failures=block",
    "DONJON_MONITOR_AUTH_FAILURES": "5",
    "DONJON_MONITOR_TICK_S": "0.2",
}
#: A key that authenticates nothing: six of them from one source are an attack.
BAD_KEY = "dj_0123456789abcdef_" + "x" * 43


def _stuff(node: LiveNode, source: str) -> None:
    """Six bad keys from `source` (the node may be killed meanwhile)."""
    with node.client(BAD_KEY, source) as c:
        for _ in range(6):
            with contextlib.suppress(httpx.HTTPError):
                c.get("/v1/functions")


def test_automatic_throttle_killed_at_its_commit_is_audited(tmp_path: Path) -> None:
    """A throttle the monitor set, killed the moment it is stored, is in force after the
    restart only with its `response.throttle` record, even once the detector no longer
    blocks (the restart's unanswered alerts are answered only in `block` mode)."""
    node = start_node(tmp_path / "data", BLOCKING, measured=False)  # killed
    try:
        for n in range(TRIES):
            if n:
                node.stop()
                node.serve_again(BLOCKING, measured=False)
            source = fresh_source()
            sql = "SELECT count(*) FROM throttles WHERE kind = 'source' AND subject = ?"
            with CommitWatch(node, sql, _more_than(0), args=(source,)) as watch:
                _stuff(node, source)
                assert watch.fired.wait(60)
            node.serve_again(measured=n == TRIES - 1)  # the detector back to `alert`
            assert query(node, sql, source) == [(1,)]  # kept, so in force
            assert audited(node, "response.throttle", f"source:{source}"), "kept, unaudited"
        verify_intact(node)
    finally:
        node.stop()


#: A node that revokes a key calling a function it never called past the learning window.
REVOKING = {
    "DONJON_MONITOR_MODES": "first_seen=block",
    "DONJON_MONITOR_RESPONSES": "first_seen.function=revoke",
    "DONJON_MONITOR_LEARNING_S": "3",
    "DONJON_MONITOR_TICK_S": "0.2",
}


def test_automatic_revocation_killed_at_its_commit_is_audited_as_made(tmp_path: Path) -> None:
    """A key the monitor revoked, killed the moment the revocation is stored, is revoked
    after the restart with its `response.revoke` record saying it was made (`ok`), even
    once the detector no longer blocks."""
    node = start_node(tmp_path / "data", REVOKING, measured=False)  # killed
    try:
        for name in ("usual", "unusual"):
            node.deploy(bundle(tmp_path, name, "def handler(e, c):\n    return 1\n"))
        for n in range(TRIES):
            if n:
                node.stop()
                node.serve_again(REVOKING, measured=False)
            key = node.create_key(f"victim-{n}", "invoker")
            assert node.invoke("usual", {}, key["key"]).status_code == 200
            time.sleep(4)  # past the learning window: the next function is a first
            sql = "SELECT revoked_at FROM api_keys WHERE id = ?"
            revoked = CommitWatch(node, sql, lambda rows: rows[0][0] is not None, args=(key["id"],))
            with revoked:
                with contextlib.suppress(httpx.HTTPError):
                    node.invoke("unusual", {}, key["key"])
                assert revoked.fired.wait(60)
            node.serve_again(measured=n == TRIES - 1)  # the detector back to `alert`
            assert query(node, sql, key["id"])[0][0] is not None
            made = [r["outcome"] for r in audited(node, "response.revoke", f"key:{key['id']}")]
            assert made and set(made) == {"ok"}, made  # (repeated if killed before its deletion)
        verify_intact(node)
    finally:
        node.stop()


@pytest.mark.parametrize("lift", [False, True], ids=["add", "lift"])
def test_throttle_by_hand_killed_at_its_commit_is_whole_and_audited(
    tmp_path: Path, lift: bool
) -> None:
    """A throttle set (or lifted) by hand, killed the moment the store has it, is in force
    (or lifted) after the restart, with its record."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        key = node.create_key("victim", "invoker")
        subject = f"principal:key:{key['id']}"
        path = f"/v1/throttles/{subject}"
        if lift:
            answered(node, "PUT", path, 201, json={"reason": "before"})
        sql = "SELECT count(*) FROM throttles WHERE subject = ?"
        done = (lambda rows: rows[0][0] == 0) if lift else _more_than(0)
        with CommitWatch(node, sql, done, args=(f"key:{key['id']}",)) as watch:
            if lift:
                answer = send(node, "DELETE", path)
            else:
                answer = send(node, "PUT", path, json={"reason": "crash"})
            assert watch.fired.wait(60)
        assert answer is None or answer.is_success, answer.text
        node.serve_again()
        action = "response.unthrottle" if lift else "response.throttle"
        assert audited(node, action, subject), "made, unaudited"
        listed = answered(node, "GET", "/v1/responses", 200)["throttles"]
        assert [t["subject"] for t in listed] == ([] if lift else [subject])
        verify_intact(node)
    finally:
        node.stop()


def test_async_call_whose_audit_writer_is_killed_at_its_enqueue_is_answered_queued(
    tmp_path: Path,
) -> None:
    """An async call queued as its audit writer is killed runs, so it is answered 202 (not
    "the request was not completed", which has its client send it again), with its
    `invocation.enqueue` record in the log."""
    node = start_node(tmp_path / "data")
    try:
        node.deploy(bundle(tmp_path, "echo", "def handler(e, c):\n    return e\n"))
        sql = "SELECT count(*) FROM invocations"
        killed: list[int] = []
        for n in range(TRIES):
            writer_back(node, killed)  # the last try's killed writer replaced: else a 503
            held = query(node, sql)[0][0]
            killed = audit_writers(node)
            with CommitWatch(node, sql, _more_than(held), killed) as watch:
                answer = send(
                    node,
                    "POST",
                    "/v1/functions/echo/invoke",
                    content=json.dumps({"n": n}),
                    headers={"prefer": "respond-async"},
                )
                assert watch.fired.wait(60)
            ((queued,),) = query(
                node, "SELECT id FROM invocations ORDER BY enqueued_at DESC LIMIT 1"
            )
            assert wait_for(node, queued)["status"] == "succeeded"  # it ran: it was taken
            assert answer is not None and answer.status_code == 202, (n, answer and answer.text)
            assert answer.json()["invocation_id"] == queued
            enqueued = [
                r
                for r in records(node, "invocation.enqueue")
                if r["detail"]["invocation_id"] == queued
            ]
            assert enqueued, "queued and run, its enqueue unaudited"
    finally:
        node.stop()
    verify_intact(node)


def test_dead_letter_whose_audit_writer_is_killed_at_its_commit_is_audited(
    tmp_path: Path,
) -> None:
    """An event dead-lettered as its audit writer is killed has its `invocation.dead`
    and last `invocation.attempt` records in the log, without a restart of the node."""
    node = start_node(tmp_path / "data")
    try:
        extra = "retry: {attempts: 1, backoff_s: 0.1, max_age_s: 600}\n"
        node.deploy(bundle(tmp_path, "failing", FAILING, extra))
        killed: list[int] = []
        for n in range(TRIES):
            writer_back(node, killed)  # the last try's killed writer replaced: else a 503
            answer = invoke_async(node, "failing", {"n": n})
            assert answer.status_code == 202, answer.text
            invocation = answer.json()["invocation_id"]
            sql = "SELECT status FROM invocations WHERE id = ?"
            killed = audit_writers(node)
            dead = CommitWatch(node, sql, lambda rows: rows[0][0] == "dead", killed, (invocation,))
            with dead:
                assert dead.fired.wait(60)
            assert wait_for(node, invocation)["status"] == "dead"
            mine = _of(node, "invocation.dead", invocation)
            assert mine, f"dead-lettered, unaudited ({n})"
            attempts = _of(node, "invocation.attempt", invocation)
            assert [r["detail"]["state"] for r in attempts] == ["dead"], attempts
    finally:
        node.stop()
    verify_intact(node)


def _of(node: LiveNode, action: str, invocation: str) -> list[dict[str, Any]]:
    """The `action` records about `invocation`, waited for while the writer is replaced."""
    deadline = time.monotonic() + 60
    while True:
        found = [r for r in records(node, action) if r["detail"]["invocation_id"] == invocation]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""
