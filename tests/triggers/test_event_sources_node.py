"""Storage and database events on a real node: a function deployed with an s3 (SQS) or a
postgres trigger runs once per matching event, its secret opened by the node; a killed
database connection is reconnected; an unreachable database is alerted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import LiveNode, free_port, run_cli, start_node
from moto_support import SECRET_ACCESS_KEY, MotoServer
from postgres_support import PostgresServer

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
    node = start_node(tmp_path_factory.mktemp("sources-node"), LOOPBACK)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def _deploy(live: LiveNode, root: Path, name: str, trigger: str) -> None:
    fn = root / name
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        f"triggers:\n  - {trigger}\n"
    )
    (fn / "main.py").write_text(PRINTER)
    live.deploy(fn)


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


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_bucket_events_from_sqs_run_the_function_once_per_matching_record(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """Objects put and deleted in a bucket whose notifications go to SQS: the function runs
    once for each record under in/ ending .jpg (created and removed), never for the others;
    each call is audited with trigger s3, and the queue is left empty."""
    sqs, s3 = moto.client("sqs"), moto.client("s3")
    url = sqs.create_queue(QueueName="photo-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.create_bucket(Bucket="photos")
    s3.put_bucket_notification_configuration(
        Bucket="photos",
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    _secret(live, "photo-queue", moto.queue_settings(url))
    _deploy(
        live,
        tmp_path,
        "on-photo",
        # Block style: the scanner reads `secret: NAME}` in flow style as a hard-coded value.
        "s3:\n      source: sqs\n      secret: photo-queue\n      bucket: photos\n"
        "      prefix: in/\n      suffix: .jpg",
    )
    s3.put_object(Bucket="photos", Key="in/cat 1.jpg", Body=b"meow")
    s3.put_object(Bucket="photos", Key="in/notes.txt", Body=b"-")
    s3.put_object(Bucket="photos", Key="out/dog.jpg", Body=b"-")
    s3.delete_object(Bucket="photos", Key="in/cat 1.jpg")

    def drained() -> bool:
        attrs: dict[str, str] = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return set(attrs.values()) == {"0"}

    _until(lambda: len(_events(live, "on-photo")) >= 2 and drained(), "two calls, queue empty")
    time.sleep(1)  # anything left over would have run by now
    events = _events(live, "on-photo")
    names = sorted(e["Records"][0]["eventName"] for e in events)
    assert names == ["ObjectCreated:Put", "ObjectRemoved:Delete"]
    assert {e["Records"][0]["s3"]["bucket"]["name"] for e in events} == {"photos"}
    calls = [
        r
        for r in _audit(live)
        if r["action"] == "function.invoke" and r["target"].startswith("on-photo")
    ]
    assert len(calls) == 2
    assert {r["detail"]["trigger"] for r in calls} == {"s3"}
    # The queue's credentials never reach the audit log.
    assert SECRET_ACCESS_KEY not in json.dumps(_audit(live))


def _listeners(pg: PostgresServer) -> list[int]:
    with pg.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _notify(pg: PostgresServer, payload: str) -> None:
    with pg.connect() as conn:
        conn.execute("SELECT pg_notify('orders', %s)", (payload,))


def test_notifications_run_the_function_and_survive_a_killed_connection(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """NOTIFY on the channel runs the function with the payload; after pg_terminate_backend
    the node reconnects (the outage and the recovery audited) and goes on delivering; once
    the function is removed it stops listening."""
    _secret(live, "orders-db", pg.dsn())
    _deploy(live, tmp_path, "on-order", "postgres: {dsn: orders-db, channel: orders}")
    _until(lambda: len(_listeners(pg)) == 1, "the node's LISTEN")
    (first,) = _listeners(pg)
    _notify(pg, '{"order": 1}')
    _until(lambda: _events(live, "on-order") == [{"order": 1}], "the first call")

    with pg.connect() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))
    _until(lambda: _listeners(pg) not in ([], [first]), "a new LISTEN")
    _notify(pg, "not json")
    _until(
        lambda: _events(live, "on-order") == [{"order": 1}, {"payload": "not json"}],
        "the call after the reconnection",
    )
    actions = [
        r["action"]
        for r in _audit(live)
        if r["target"] == "on-order" and r["action"].startswith("trigger.source.")
    ]
    assert actions == ["trigger.source.unavailable", "trigger.source.available"]
    calls = [
        r
        for r in _audit(live)
        if r["action"] == "function.invoke" and r["target"].startswith("on-order")
    ]
    assert [r["detail"]["trigger"] for r in calls] == ["postgres", "postgres"]

    run_cli(live.env(), "rm", "on-order")
    _until(lambda: _listeners(pg) == [], "the LISTEN to end with the function")


def test_a_notification_past_the_functions_body_limit_runs_nothing(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """limits.body holds for database events too: a payload over it is not run (and the
    node says so in its log), one under it is."""
    _secret(live, "small-db", pg.dsn())
    fn = tmp_path / "on-small"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        "name: on-small\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        "limits: {body: 64B}\ntriggers:\n  - postgres:\n      dsn: small-db\n"
        "      channel: small\n"
    )
    (fn / "main.py").write_text(PRINTER)
    live.deploy(fn)

    def notify(payload: str) -> None:
        with pg.connect() as conn:
            conn.execute("SELECT pg_notify('small', %s)", (payload,))

    _until(lambda: len(_listeners(pg)) == 1, "the node's LISTEN")
    notify(json.dumps({"big": "x" * 200}))
    notify('{"small": 1}')
    _until(lambda: _events(live, "on-small") == [{"small": 1}], "the small event's call")
    assert "over the limit of function on-small" in (live.data_dir / "serve.log").read_text()
    run_cli(live.env(), "rm", "on-small")
    _until(lambda: _listeners(pg) == [], "the LISTEN to end with the function")


def test_an_unreachable_database_is_alerted(live: LiveNode, tmp_path: Path) -> None:
    """A postgres trigger whose DSN nothing answers on: an alert on the function names the
    outage (once), and the DSN's password is nowhere in it."""
    _secret(live, "gone-db", f"postgresql://app:pw-not-shown@127.0.0.1:{free_port()}/x")
    _deploy(live, tmp_path, "on-gone", "postgres: {dsn: gone-db, channel: orders}")

    def alerts() -> list[dict[str, Any]]:
        with live.client() as c:
            r = c.get("/v1/alerts", params={"kind": "trigger.source.unavailable", "n": 100})
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()
        return [a for a in found if a["subject"] == "function:on-gone"]

    _until(lambda: len(alerts()) == 1, "the alert")
    (alert,) = alerts()
    assert alert["severity"] == "high"
    assert "pw-not-shown" not in json.dumps(alert)
    assert "pw-not-shown" not in json.dumps(_audit(live))
    run_cli(live.env(), "rm", "on-gone")
