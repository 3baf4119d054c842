"""Attacks on the event sources a node pulls from itself: an SQS queue (bucket notifications,
a real moto server) and PostgreSQL LISTEN/NOTIFY (a real server), against a real node.

The attacker controls what arrives on the queue or the channel (and may hold a session of
its own on the database), or holds a key that is not the node's admin's."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from donjon.bundle import build_bundle
from harness import LiveNode, free_port, run_cli, start_node
from moto_support import SECRET_ACCESS_KEY, MotoServer
from postgres_support import PostgresServer
from utc_day import clear_of_utc_midnight

#: The loopback servers these tests stand up are internal addresses: opened to the node's
#: sources as an admin opens an internal network (triggers/source_address.py).
LOOPBACK = {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.0/8"}

pytestmark = pytest.mark.slow

PRINTER = """\
import json


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = start_node(tmp_path_factory.mktemp("evsrc-node"), LOOPBACK)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("evsrc-moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    with server.connect() as conn:  # a role of the attacker's: it may connect and NOTIFY
        conn.execute("CREATE ROLE app LOGIN")
    yield server
    server.stop()


def _write(root: Path, name: str, triggers: str, extra: str = "") -> Path:
    fn = root / name
    fn.mkdir(exist_ok=True)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n{extra}"
        f"triggers:\n  - {triggers}\n"
    )
    (fn / "main.py").write_text(PRINTER)
    return fn


def _secret(live: LiveNode, name: str, value: str) -> None:
    run_cli(live.env(), "secret", "set", name, input=value)


def _events(live: LiveNode, name: str) -> list[Any]:
    """The events the function printed, oldest first, as `donjon logs` shows them."""
    out = run_cli(live.env(), "logs", name, "-n", "100").stdout
    return [json.loads(m) for m in re.findall(r"^\| EVENT (.*)$", out, re.MULTILINE)]


def _audit(live: LiveNode) -> list[dict[str, Any]]:
    with live.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 2000}).json()
    return records


def _alerts(live: LiveNode, function: str) -> list[dict[str, Any]]:
    with live.client() as c:
        r = c.get("/v1/alerts", params={"kind": "trigger.source.unavailable", "n": 100})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return [a for a in found if a["subject"] == f"function:{function}"]


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _listening(pg: PostgresServer, channel: str) -> int:
    """How many sessions LISTEN on `channel` now."""
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s", (f'LISTEN "{channel}"',)
        ).fetchone()
    return int(row[0]) if row else 0


def _notify(pg: PostgresServer, channel: str, payload: str) -> None:
    with pg.connect() as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def test_a_dsn_that_does_not_parse_shows_no_password(live: LiveNode, tmp_path: Path) -> None:
    """A DSN whose password holds a bare `%` (libpq quotes the token it cannot decode in its
    error): the outage is audited and alerted, but the password is in no record, alert or
    log line (invariant 6)."""
    _secret(live, "pct-db", f"postgresql://app:pa%zz-LEAKME-pw@127.0.0.1:{free_port()}/x")
    live.deploy(_write(tmp_path, "on-pct", "postgres: {dsn: pct-db, channel: orders}"))
    _until(lambda: len(_alerts(live, "on-pct")) == 1, "the outage's alert")
    records = [r for r in _audit(live) if r["target"] == "on-pct"]
    assert any(r["action"] == "trigger.source.unavailable" for r in records)
    assert "LEAKME" not in json.dumps(_alerts(live, "on-pct"))
    assert "LEAKME" not in json.dumps(_audit(live))
    assert "LEAKME" not in (live.data_dir / "serve.log").read_text(errors="replace")
    run_cli(live.env(), "rm", "on-pct")


def _lock_key(function: str, channel: str) -> int:
    """The trigger's advisory lock key, as docs/triggers.md says it is made (no secret)."""
    digest = hashlib.blake2b(f"donjon:{function}:{channel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def test_a_stranger_holding_the_triggers_lock_is_alerted(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A database user who is not the listener (role `app`) takes the trigger's advisory lock
    first: the node's listener cannot LISTEN, and says so (an alert on the function) instead
    of waiting silently as if another node led while every NOTIFY is lost; once the
    stranger lets go, the listener takes the lock and the function runs."""
    _secret(live, "squat-db", pg.dsn())
    squatter = psycopg.connect(
        f"postgresql://app@127.0.0.1:{pg.port}/postgres?connect_timeout=5", autocommit=True
    )
    try:
        squatter.execute("SELECT pg_advisory_lock(%s)", (_lock_key("on-squat", "squat"),))
        live.deploy(_write(tmp_path, "on-squat", "postgres: {dsn: squat-db, channel: squat}"))
        _until(lambda: len(_alerts(live, "on-squat")) == 1, "an alert on the held lock", 20)
        assert _listening(pg, "squat") == 0
    finally:
        squatter.close()
    _until(lambda: _listening(pg, "squat") == 1, "the node's LISTEN once the lock is free")
    _notify(pg, "squat", '{"n": 1}')
    _until(lambda: _events(live, "on-squat") == [{"n": 1}], "the call")
    run_cli(live.env(), "rm", "on-squat")


def test_database_events_spend_the_functions_quota(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A flood of NOTIFYs is held to the function's daily quota as HTTP calls are: with
    `invocations: 2`, five notifications run the function twice, no more."""
    clear_of_utc_midnight(120.0)
    _secret(live, "quota-db", pg.dsn())
    live.deploy(_write(tmp_path, "on-quota", "postgres: {dsn: quota-db, channel: quota}"))
    with live.client() as c:
        assert c.put("/v1/quotas/function:on-quota", json={"invocations": 2}).status_code == 201
    _until(lambda: _listening(pg, "quota") == 1, "the node's LISTEN")
    for n in range(5):
        _notify(pg, "quota", json.dumps({"n": n}))
    _until(lambda: len(_events(live, "on-quota")) >= 2, "two calls")
    time.sleep(5)  # the refused three's retries (2 s backoff) would have run by now
    assert len(_events(live, "on-quota")) == 2
    assert any(
        r["action"] == "quota.exhausted" for r in _audit(live) if "on-quota" in json.dumps(r)
    )
    run_cli(live.env(), "rm", "on-quota")


def _s3_record(bucket: str, key: str, sequencer: str) -> dict[str, Any]:
    return {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "sequencer": sequencer}},
    }


def _record(bucket: str, key: str, sequencer: str) -> str:
    """A notification of one record, as S3 puts it on the queue."""
    return json.dumps({"Records": [_s3_record(bucket, key, sequencer)]})


def test_poison_messages_block_neither_the_queue_nor_other_buckets_reach_the_function(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """Messages put on the queue by its attacker, ahead of a good one: a record over the
    function's `limits.body` and a body that is not JSON are never run nor
    deleted (left to the redrive policy), however often they come back, and the malformed
    one is audited once; a record claiming another bucket does not run the function; the
    good record behind them runs once."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="poison", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    _secret(live, "poison-queue", moto.queue_settings(url))
    sqs.send_message(QueueUrl=url, MessageBody=_record("photos", "in/" + "a" * 2000, "01"))
    sqs.send_message(QueueUrl=url, MessageBody='{"Records": [{"s3": ')
    sqs.send_message(QueueUrl=url, MessageBody=_record("secrets", "in/theirs", "02"))
    sqs.send_message(QueueUrl=url, MessageBody=_record("photos", "in/good", "03"))
    live.deploy(
        _write(
            tmp_path,
            "on-poison",
            "s3:\n      source: sqs\n      secret: poison-queue\n      bucket: photos\n"
            "      prefix: in/",
            extra="limits: {body: 1KiB}\n",
        )
    )
    _until(lambda: len(_events(live, "on-poison")) >= 1, "the good record's call")
    time.sleep(4)  # the two poison messages come back each second meanwhile
    events = _events(live, "on-poison")
    assert [e["Records"][0]["s3"]["object"]["key"] for e in events] == ["in/good"]
    malformed = [
        r
        for r in _audit(live)
        if r["action"] == "trigger.event.malformed" and r["target"] == "on-poison"
    ]
    assert len(malformed) == 1
    run_cli(live.env(), "rm", "on-poison")
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert sum(int(v) for v in attrs.values()) == 2  # the two poison messages, not deleted


def test_a_redeploy_on_another_channel_stops_the_old_listener(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A function redeployed with its trigger moved to another channel: the old LISTEN ends
    and a NOTIFY on the old channel runs nothing; the new channel runs it."""
    _secret(live, "move-db", pg.dsn())
    live.deploy(_write(tmp_path, "on-move", "postgres: {dsn: move-db, channel: move_a}"))
    _until(lambda: _listening(pg, "move_a") == 1, "the LISTEN on move_a")
    live.deploy(_write(tmp_path, "on-move", "postgres: {dsn: move-db, channel: move_b}"))
    _until(
        lambda: _listening(pg, "move_b") == 1 and _listening(pg, "move_a") == 0,
        "the LISTEN to move to move_b",
    )
    _notify(pg, "move_a", '{"old": 1}')
    _notify(pg, "move_b", '{"new": 1}')
    _until(lambda: len(_events(live, "on-move")) >= 1, "the call on move_b")
    time.sleep(1)
    assert _events(live, "on-move") == [{"new": 1}]
    run_cli(live.env(), "rm", "on-move")


def test_an_invoker_cannot_start_a_source_and_no_answer_shows_a_dsn(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A key of role invoker cannot deploy a function with a database trigger (403, nothing
    listens); the admin's view of a deployed one, a developer's, and /metrics name the
    secret, never the DSN's password."""
    dsn = f"postgresql://app:pw-NOT-SHOWN-7@127.0.0.1:{pg.port}/postgres"
    _secret(live, "view-db", dsn)
    fn = _write(tmp_path, "on-view", "postgres: {dsn: view-db, channel: view}")
    _, archive = build_bundle(fn)
    invoker = live.create_key("evsrc-invoker", "invoker")["key"]
    with live.client(invoker) as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    assert r.status_code == 403, r.text
    time.sleep(1)
    assert _listening(pg, "view") == 0
    live.deploy(fn)
    _until(lambda: _listening(pg, "view") == 1, "the admin's deploy to LISTEN")
    developer = live.create_key("evsrc-dev", "developer")["key"]
    with live.client() as c:
        answers = [c.get("/v1/functions/on-view").text, c.get("/metrics").text]
    with live.client(developer) as c:
        answers += [c.get("/v1/functions").text, c.get("/v1/functions/on-view").text]
    assert all("pw-NOT-SHOWN-7" not in a for a in answers)
    assert "view-db" in answers[0]  # the view shows the trigger, by its secret's name
    run_cli(live.env(), "rm", "on-view")


def test_a_record_whose_key_is_not_unicode_is_malformed_and_runs_nothing(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """A notification whose second record's key is a lone surrogate (``\\ud800``, valid JSON,
    never UTF-8, so never a real S3 key): from SQS nothing of it runs, not its first record
    at each redelivery either, and it is audited once as malformed; pushed, it is a 400 and
    runs nothing. The message behind it on the queue runs."""
    records = [_s3_record("photos", "in/first", "10"), _s3_record("photos", "in/sur?x", "11")]
    bad = json.dumps({"Records": records}).replace("in/sur?x", "in/sur\\ud800x")
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="surrogate", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    _secret(live, "surrogate-queue", moto.queue_settings(url))
    _secret(live, "surrogate-token", "t0ken-for-the-push-of-this-attack")
    sqs.send_message(QueueUrl=url, MessageBody=bad)
    sqs.send_message(QueueUrl=url, MessageBody=_record("photos", "in/after", "12"))
    live.deploy(
        _write(
            tmp_path,
            "on-surrogate",
            "s3:\n      source: sqs\n      secret: surrogate-queue\n      prefix: in/\n"
            "  - s3:\n      source: push\n      path: /surrogate\n      secret: surrogate-token",
        )
    )
    _until(lambda: len(_events(live, "on-surrogate")) >= 1, "the call of the message behind")
    time.sleep(4)  # the bad message comes back each second meanwhile
    keys = [e["Records"][0]["s3"]["object"]["key"] for e in _events(live, "on-surrogate")]
    assert keys == ["in/after"]
    malformed = [
        r
        for r in _audit(live)
        if r["action"] == "trigger.event.malformed" and r["target"] == "on-surrogate"
    ]
    assert len(malformed) == 1
    with live.client("") as c:
        r = c.post(
            "/hooks/surrogate",
            content=bad,
            headers={"authorization": "Bearer t0ken-for-the-push-of-this-attack"},
        )
    assert r.status_code == 400, r.text
    time.sleep(1)
    keys = [e["Records"][0]["s3"]["object"]["key"] for e in _events(live, "on-surrogate")]
    assert keys == ["in/after"]
    run_cli(live.env(), "rm", "on-surrogate")


SECRETS_PRINTER = """\
import json


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    print("SECRETS " + json.dumps(dict(context.secrets)))
"""


def _queue(live: LiveNode, moto: MotoServer, name: str) -> str:
    """A queue of moto's (messages back after 1 s) and its settings in secret `name`."""
    url: str = moto.client("sqs").create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": "1"}
    )["QueueUrl"]
    _secret(live, name, moto.queue_settings(url))
    return url


def _held(moto: MotoServer, url: str) -> int:
    """Messages on the queue, visible or not."""
    attrs = moto.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def test_a_queue_left_by_a_redeploy_or_a_removal_is_no_longer_read(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """The function never sees its trigger's secret (context.secrets is empty, the keys in
    no log); redeployed to read another queue, the old queue's messages stay there and run
    nothing; removed, the new queue's messages stay there too."""
    old, new = _queue(live, moto, "life-old"), _queue(live, moto, "life-new")
    sqs = moto.client("sqs")

    def deploy(secret: str) -> None:
        fn = _write(tmp_path, "on-life", f"s3:\n      source: sqs\n      secret: {secret}")
        (fn / "main.py").write_text(SECRETS_PRINTER)
        live.deploy(fn)

    def keys() -> list[str]:
        return [e["Records"][0]["s3"]["object"]["key"] for e in _events(live, "on-life")]

    deploy("life-old")
    sqs.send_message(QueueUrl=old, MessageBody=_record("b", "one", "1"))
    _until(lambda: keys() == ["one"], "the call from the old queue")
    out = run_cli(live.env(), "logs", "on-life", "-n", "100").stdout
    assert "SECRETS {}" in out
    assert SECRET_ACCESS_KEY not in out

    deploy("life-new")
    sqs.send_message(QueueUrl=old, MessageBody=_record("b", "two", "2"))
    sqs.send_message(QueueUrl=new, MessageBody=_record("b", "three", "3"))
    _until(lambda: keys() == ["one", "three"], "the call from the new queue")
    time.sleep(3)
    assert keys() == ["one", "three"]
    assert _held(moto, old) == 1

    run_cli(live.env(), "rm", "on-life")
    sqs.send_message(QueueUrl=new, MessageBody=_record("b", "four", "4"))
    time.sleep(3)
    assert _held(moto, new) == 1


def test_a_notification_the_input_schema_refuses_runs_nothing(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A function that declares an `input_schema` only ever sees events that match it
    (docs/limits.md), whichever way they come: a NOTIFY whose payload the schema refuses
    (a string for an integer id, or text that is not JSON) is not run (the node logs it);
    a matching one is."""
    _secret(live, "schema-db", pg.dsn())
    live.deploy(
        _write(
            tmp_path,
            "on-schema",
            "postgres: {dsn: schema-db, channel: schema}",
            extra="input_schema:\n  type: object\n  required: [id]\n"
            "  properties: {id: {type: integer}}\n",
        )
    )
    _until(lambda: _listening(pg, "schema") == 1, "the node's LISTEN")
    _notify(pg, "schema", '{"id": "1; DROP TABLE orders"}')
    _notify(pg, "schema", "not json at all")
    _notify(pg, "schema", '{"id": 7}')
    _until(lambda: len(_events(live, "on-schema")) >= 1, "the matching event's call")
    time.sleep(1)
    assert _events(live, "on-schema") == [{"id": 7}]
    assert "does not match the function's schema" in (live.data_dir / "serve.log").read_text()
    run_cli(live.env(), "rm", "on-schema")


def test_a_refused_message_on_a_queue_that_never_hides_it_is_not_received_in_a_loop(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """The queue's owner sets its visibility timeout to 0 and puts on it a record over the
    function's `limits.body` and a body that is not JSON: each refused message is hidden
    by the poller (1 s, doubled at each receive), not received again at once, in a loop
    that spun the node and wrote a warning per receive (1,200 in 10 s for one message
    before). Neither runs nor is deleted."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="spin", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    _secret(live, "spin-queue", moto.queue_settings(url))
    sqs.send_message(QueueUrl=url, MessageBody=_record("photos", "in/" + "a" * 2000, "01"))
    sqs.send_message(QueueUrl=url, MessageBody="spin: not a notification")
    log = live.data_dir / "serve.log"
    start = log.stat().st_size

    def said() -> int:
        """The poller's warnings of a message of on-spin not taken."""
        with log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace").count("on-spin: message")

    live.deploy(
        _write(
            tmp_path, "on-spin", "s3: {source: sqs, secret: spin-queue}", "limits: {body: 1KiB}\n"
        )
    )
    _until(lambda: said() >= 2, "the poller's first refusal of each message")
    time.sleep(3)  # received again at once, each would have come back ~300 times by now
    assert said() <= 6  # the refused one's receives at 0, 1 and 3 s; the malformed one's once
    assert _events(live, "on-spin") == []
    run_cli(live.env(), "rm", "on-spin")
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert sum(int(v) for v in attrs.values()) == 2  # neither deleted
