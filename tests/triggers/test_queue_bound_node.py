"""A function's full async queue (`limits.queued`) on a real node, from every way in: an
async invoke and a signed webhook get 503 with Retry-After and nothing queued (the
webhook's replay claim given back), a pushed notification and an SQS message are taken
whole or not at all (the SQS message left on its queue), a NOTIFY is dropped, counted,
audited and alerted. After the queue drains, what was accepted has run and each way in
is taken again.

The queue is filled with events whose first attempt fails and whose retry is due in
minutes (pending: waiting for a retry), so it stays full whatever the machine's pace; the
test drains it by making those retries due now in the node's own database."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import invoke_async, wait_for
from harness import LiveNode, run_cli, start_node
from hooks_s3_support import document, minio_record
from moto_support import MotoServer
from postgres_support import PostgresServer
from triggers.webhook_signing import new_whsec, standard_headers

#: The loopback servers these tests stand up are internal addresses: opened to the node's
#: sources as an admin opens an internal network (triggers/source_address.py).
LOOPBACK = {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.0/8"}

pytestmark = pytest.mark.slow

#: Fill events fail their first attempt (their retry is minutes away); anything else runs.
HANDLER = """\
import json


def handler(event, context):
    if isinstance(event, dict) and event.get("fill") and context.cloudevent["donjonattempt"] == "1":
        raise RuntimeError("held for a retry")
    print("EVENT " + json.dumps(event, sort_keys=True))
    return {"ok": True}
"""
RETRY = "retry: {attempts: 3, backoff_s: 600, max_age_s: 3600}\n"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = start_node(tmp_path_factory.mktemp("qbound-node"), LOOPBACK)
    yield node
    node.stop()


def _deploy(live: LiveNode, root: Path, name: str, queued: int, triggers: str = "") -> None:
    fn = root / name
    fn.mkdir()
    (fn / "main.py").write_text(HANDLER)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        f"limits: {{queued: {queued}}}\n{RETRY}" + (f"triggers:\n{triggers}" if triggers else "")
    )
    live.deploy(fn)


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _queue(live: LiveNode, name: str) -> dict[str, Any]:
    with live.client() as c:
        r = c.get(f"/v1/functions/{name}")
    assert r.status_code == 200, r.text
    queue: dict[str, Any] = r.json()["queue"]
    return queue


def _fill(live: LiveNode, name: str, n: int) -> list[str]:
    """`n` events of `name` pending, each waiting for its retry; their ids."""
    ids = []
    for i in range(n):
        r = invoke_async(live, name, {"fill": True, "n": i})
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
    for invocation_id in ids:
        assert wait_for(live, invocation_id, ("failed",))["attempts"] == 1
    assert _queue(live, name) == {"pending": n, "limit": _queue(live, name)["limit"]}
    return ids


def _drain(live: LiveNode, name: str, ids: list[str]) -> None:
    """Make the held retries due now; they succeed and leave the queue."""
    with sqlite3.connect(live.data_dir / "donjon.db", timeout=30) as db:
        db.execute(
            "UPDATE invocations SET next_at = 0 WHERE function = ? AND status = 'failed'", (name,)
        )
    for invocation_id in ids:
        assert wait_for(live, invocation_id)["status"] == "succeeded"


def _events(live: LiveNode, name: str) -> list[Any]:
    out = run_cli(live.env(), "logs", name, "-n", "100").stdout
    return [json.loads(m) for m in re.findall(r"^\| EVENT (.*)$", out, re.MULTILINE)]


def _audit(live: LiveNode, action: str, target: str) -> list[dict[str, Any]]:
    with live.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 3000}).json()
    return [r for r in records if r["action"] == action and r["target"] == target]


def _refused(live: LiveNode, name: str, trigger: str) -> list[dict[str, Any]]:
    return [
        r for r in _audit(live, "invocation.refused", name) if r["detail"].get("trigger") == trigger
    ]


def _metrics(live: LiveNode) -> str:
    with live.client() as c:
        return c.get("/metrics").text


def test_an_async_invoke_into_a_full_queue_is_503_and_queues_nothing(
    live: LiveNode, tmp_path: Path
) -> None:
    """At its bound an async invoke is a 503 problem with Retry-After; nothing is queued;
    the refusal is audited and counted; pending is shown by describe and /metrics; after
    the drain the held events have run and an async invoke is taken again."""
    _deploy(live, tmp_path, "qb-invoke", 2)
    held = _fill(live, "qb-invoke", 2)
    r = invoke_async(live, "qb-invoke", {"late": 1})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    assert "queue of function qb-invoke is full" in r.json()["detail"]
    assert _queue(live, "qb-invoke") == {"pending": 2, "limit": 2}
    (refusal,) = _refused(live, "qb-invoke", "invoke")
    assert refusal["outcome"] == "denied"
    assert refusal["actor"].startswith("key:")
    assert refusal["detail"]["bound"] == 2
    metrics = _metrics(live)
    assert 'donjon_rate_limited_total{function="qb-invoke",limit="queued"} 1.0' in metrics
    assert 'donjon_queue_pending{function="qb-invoke"} 2.0' in metrics
    described = run_cli(live.env(), "describe", "qb-invoke").stdout
    assert "2 pending of 2 (limits.queued)" in described

    _drain(live, "qb-invoke", held)
    assert _queue(live, "qb-invoke")["pending"] == 0
    r = invoke_async(live, "qb-invoke", {"late": 2})
    assert r.status_code == 202, r.text
    assert wait_for(live, r.json()["invocation_id"])["status"] == "succeeded"
    assert {"late": 1} not in _events(live, "qb-invoke")  # the refused one never ran


def test_a_webhook_into_a_full_queue_is_503_and_its_resend_is_taken(
    live: LiveNode, tmp_path: Path
) -> None:
    """A signed delivery to a full queue is a 503 with Retry-After, nothing queued; its
    replay claim is given back, so the sender's retry of the same delivery is taken once
    the queue drains, and runs."""
    key = new_whsec()
    with live.client() as c:
        assert c.post("/v1/secrets/qb-hook-key", json={"value": key}).status_code == 201
    _deploy(
        live,
        tmp_path,
        "qb-hook",
        2,
        "  - webhook:\n      path: /qb\n      scheme: standard\n      secret: qb-hook-key\n",
    )
    held = _fill(live, "qb-hook", 2)
    body = json.dumps({"type": "order.paid", "amount": 7}).encode()
    headers = standard_headers(key, body, f"msg_{secrets.token_hex(6)}")
    with httpx.Client(base_url=live.url, verify=live.tls, timeout=30) as c:
        r = c.post("/hooks/qb", content=body, headers=headers)
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert _queue(live, "qb-hook")["pending"] == 2
        assert len(_refused(live, "qb-hook", "webhook")) == 1
        _drain(live, "qb-hook", held)
        r = c.post("/hooks/qb", content=body, headers=headers)  # the sender's retry
        assert r.status_code == 202, r.text
        assert wait_for(live, r.json()["id"])["status"] == "succeeded"
        again = c.post("/hooks/qb", content=body, headers=headers)
        assert again.status_code == 401  # taken once: now a replay
    ran = [e for e in _events(live, "qb-hook") if e.get("body")]
    assert [e["body"] for e in ran] == [{"type": "order.paid", "amount": 7}]


def test_a_pushed_notification_is_taken_whole_or_refused_503(
    live: LiveNode, tmp_path: Path
) -> None:
    """With one place left, a pushed notification of two records is a 503 and neither is
    queued; after the drain the store's resend is taken whole and both run."""
    token = secrets.token_hex(16)
    with live.client() as c:
        assert c.post("/v1/secrets/qb-push-token", json={"value": token}).status_code == 201
    _deploy(
        live,
        tmp_path,
        "qb-push",
        3,
        "  - s3:\n      source: push\n      path: /qb-push\n      secret: qb-push-token\n",
    )
    held = _fill(live, "qb-push", 2)
    body = document(minio_record("a.png"), minio_record("b.png"))
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    with httpx.Client(base_url=live.url, verify=live.tls, timeout=30) as c:
        r = c.post("/hooks/qb-push", content=body, headers=headers)
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert _queue(live, "qb-push")["pending"] == 2  # not 3: none of the two was queued
        (refusal,) = _refused(live, "qb-push", "s3")
        assert refusal["detail"]["wanted"] == 2
        _drain(live, "qb-push", held)
        r = c.post("/hooks/qb-push", content=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2
        for invocation_id in r.json()["invocations"]:
            assert wait_for(live, invocation_id)["status"] == "succeeded"
    keys = sorted(
        e["Records"][0]["s3"]["object"]["key"] for e in _events(live, "qb-push") if "Records" in e
    )
    assert keys == ["a.png", "b.png"]
    with httpx.Client(base_url=live.url, verify=live.tls, timeout=30) as c:
        four = document(*(minio_record(f"{n}.png") for n in range(4)))
        r = c.post("/hooks/qb-push", content=four, headers=headers)
    # More records than the whole bound (3): never queued, however long the store waits.
    assert r.status_code == 413, r.text
    assert "retry-after" not in r.headers
    assert "can never be queued together" in r.json()["detail"]
    assert _queue(live, "qb-push")["pending"] == 0


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


def test_an_sqs_message_for_a_full_queue_stays_on_sqs_with_none_of_its_records_queued(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """With one place left, an SQS message of two records submits neither and is not
    deleted; once the queue drains it is received again, both records run, and the
    message is deleted."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="qb-events", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    run_cli(live.env(), "secret", "set", "qb-queue", input=moto.queue_settings(url))
    _deploy(live, tmp_path, "qb-sqs", 3, "  - s3:\n      source: sqs\n      secret: qb-queue\n")
    held = _fill(live, "qb-sqs", 2)
    sqs.send_message(
        QueueUrl=url, MessageBody=document(minio_record("x.png"), minio_record("y.png")).decode()
    )
    _until(lambda: bool(_refused(live, "qb-sqs", "s3")), "the message's refusal")
    assert _queue(live, "qb-sqs")["pending"] == 2  # neither record was queued

    def on_sqs() -> int:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    assert on_sqs() == 1  # not deleted: it comes back after its visibility timeout
    _drain(live, "qb-sqs", held)

    def both_ran() -> bool:
        keys = [
            e["Records"][0]["s3"]["object"]["key"]
            for e in _events(live, "qb-sqs")
            if "Records" in e
        ]
        return sorted(keys) == ["x.png", "y.png"]

    _until(both_ran, "both records to run after the drain")
    _until(lambda: on_sqs() == 0, "the message to be deleted")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def test_a_notify_for_a_full_queue_is_dropped_counted_audited_and_alerted(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """NOTIFY cannot be asked again: a notification refused by the full queue is audited
    (`trigger.event.dropped`, alerted by the event_sources rule) and counted; after the
    drain the next one runs, and the run of drops is closed with its count."""
    run_cli(live.env(), "secret", "set", "qb-db", input=pg.dsn())
    _deploy(
        live,
        tmp_path,
        "qb-pg",
        1,
        "  - postgres:\n      dsn: qb-db\n      channel: qb_orders\n",
    )

    def listening() -> bool:
        with pg.connect() as conn:
            rows = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN %%qb_orders%%'"
            ).fetchall()
        return bool(rows)

    def notify(payload: str) -> None:
        with pg.connect() as conn:
            conn.execute("SELECT pg_notify('qb_orders', %s)", (payload,))

    _until(listening, "the node's LISTEN")
    held = _fill(live, "qb-pg", 1)
    notify('{"order": 1}')
    _until(lambda: bool(_audit(live, "trigger.event.dropped", "qb-pg")), "the drop's record")
    (dropped,) = _audit(live, "trigger.event.dropped", "qb-pg")
    assert dropped["outcome"] == "refused"
    assert "queue of function qb-pg is full" in dropped["detail"]["reason"]
    assert dropped["detail"]["dropped"] == 1
    assert len(_refused(live, "qb-pg", "postgres")) == 1
    assert _queue(live, "qb-pg")["pending"] == 1

    def alerted() -> bool:
        with live.client() as c:
            alerts: list[dict[str, Any]] = c.get("/v1/alerts").json()
        return any(
            a["kind"] == "trigger.event.dropped" and a["subject"] == "function:qb-pg"
            for a in alerts
        )

    _until(alerted, "the alert on function:qb-pg")

    _drain(live, "qb-pg", held)
    notify('{"order": 2}')
    _until(lambda: {"order": 2} in _events(live, "qb-pg"), "the call after the drain")
    assert {"order": 1} not in _events(live, "qb-pg")
    closed = _audit(live, "trigger.event.dropped", "qb-pg")
    assert len(closed) == 2
    assert [r["detail"]["dropped"] for r in closed] == [1, 1]
    run_cli(live.env(), "rm", "qb-pg")


def test_a_notify_the_schema_refuses_leaks_no_value_into_the_audit_log(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A NOTIFY whose payload the function's input_schema refuses is dropped and audited
    (`trigger.event.dropped`), but the record keeps none of the payload's values nor its
    keys (the schema's message names both): the audit log is append-only and a database's
    rows (a card number, an email) must not land in it."""
    run_cli(live.env(), "secret", "set", "qb-leak-db", input=pg.dsn())
    fn = tmp_path / "qb-leak"
    fn.mkdir()
    (fn / "main.py").write_text(HANDLER)
    schema = "{type: object, additionalProperties: {type: integer}}"
    (fn / "donjon.yaml").write_text(
        "name: qb-leak\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        f"input_schema: {schema}\n"
        "triggers:\n  - postgres:\n      dsn: qb-leak-db\n      channel: qb_leak\n"
    )
    live.deploy(fn)

    def listening() -> bool:
        with pg.connect() as conn:
            rows = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN %%qb_leak%%'"
            ).fetchall()
        return bool(rows)

    _until(listening, "the node's LISTEN")
    value = "VALUE-" + secrets.token_hex(6)
    key = "KEY-" + secrets.token_hex(6)
    with pg.connect() as conn:
        conn.execute("SELECT pg_notify('qb_leak', %s)", (json.dumps({"card": value}),))
    _until(lambda: bool(_audit(live, "trigger.event.dropped", "qb-leak")), "the drop's record")
    (dropped,) = _audit(live, "trigger.event.dropped", "qb-leak")
    assert "InvalidInput" in dropped["detail"]["reason"]
    with pg.connect() as conn:  # the run of refusals goes on: its key this time
        conn.execute("SELECT pg_notify('qb_leak', %s)", (json.dumps({key: "x"}),))
        conn.execute("SELECT pg_notify('qb_leak', %s)", (json.dumps({"ok": 1}),))
    _until(lambda: {"ok": 1} in _events(live, "qb-leak"), "the call the schema takes")
    _until(lambda: len(_audit(live, "trigger.event.dropped", "qb-leak")) == 2, "the run's end")
    with live.client() as c:
        records = c.get("/v1/audit", params={"n": 3000}).text
    assert value not in records
    assert key not in records
    run_cli(live.env(), "rm", "qb-leak")


def test_a_function_whose_pending_count_cannot_be_read_is_shown_with_it_unknown(
    tmp_path: Path,
) -> None:
    """GET of a function answers 200 with its queue's count null (and describe says
    unknown) while the queue's table cannot be read, the node logs why, /metrics still
    answers; once the table is back the count is read again."""
    node = start_node(tmp_path / "node")
    try:
        _deploy(node, tmp_path, "qb-unread", 5)
        database = node.data_dir / "donjon.db"
        with sqlite3.connect(database, timeout=30) as db:
            db.execute("ALTER TABLE invocations RENAME TO invocations_away")
        try:
            assert _queue(node, "qb-unread") == {"pending": None, "limit": 5}
            described = run_cli(node.env(), "describe", "qb-unread").stdout
            assert "unknown (the count could not be read) pending of 5" in described
            with node.client() as c:
                assert c.get("/metrics").status_code == 200
        finally:
            with sqlite3.connect(database, timeout=30) as db:
                db.execute("ALTER TABLE invocations_away RENAME TO invocations")
        assert _queue(node, "qb-unread") == {"pending": 0, "limit": 5}
        log = (node.data_dir / "serve.log").read_text(errors="replace")
        assert "function qb-unread: its pending count could not be read" in log
    finally:
        node.stop()
