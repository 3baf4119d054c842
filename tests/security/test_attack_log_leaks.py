"""Attacks that try to make the platform copy what a caller sent (an event's values, a
credential) into places other parties read: the node's own log (`donjon serve`'s
stderr), the audit log, alerts, /metrics. Each plants a unique marker and looks for it
in all of them, against a real node (and a real PostgreSQL or SQS where the path needs
one).

What a function prints is its own log (`donjon logs`), not the node's: these functions
print nothing of their events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from async_support import wait_for
from harness import LiveNode, run_cli, start_node
from moto_support import MotoServer
from postgres_support import PostgresServer

#: The loopback servers these tests stand up are internal addresses: opened to the node's
#: sources as an admin opens an internal network (triggers/source_address.py).
LOOPBACK = {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.0/8"}

pytestmark = pytest.mark.slow

QUIET = """\
def handler(event, context):
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = start_node(tmp_path_factory.mktemp("leak-node"), LOOPBACK)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("leak-moto"))
    server.start()
    yield server
    server.stop()


def _marker() -> str:
    return f"LEAKMARK-{uuid.uuid4().hex}"


def _write(root: Path, name: str, body: str) -> Path:
    fn = root / name
    fn.mkdir(exist_ok=True)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n{body}"
    )
    (fn / "main.py").write_text(QUIET)
    return fn


def _node_log(live: LiveNode) -> str:
    return (live.data_dir / "serve.log").read_text(errors="replace")


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _everywhere_else(live: LiveNode) -> dict[str, str]:
    """What other parties read of the node: its log, the audit log, the alerts, /metrics."""
    with live.client() as c:
        audit = c.get("/v1/audit", params={"n": 5000})
        alerts = c.get("/v1/alerts", params={"n": 1000})
        metrics = c.get("/metrics")
    assert audit.status_code == alerts.status_code == metrics.status_code == 200
    return {
        "node log": _node_log(live),
        "audit": audit.text,
        "alerts": alerts.text,
        "metrics": metrics.text,
    }


def _assert_nowhere(live: LiveNode, marker: str) -> None:
    found = [place for place, text in _everywhere_else(live).items() if marker in text]
    assert found == [], f"{marker} copied into: {', '.join(found)}"


def _queue_with_key(live: LiveNode, moto: MotoServer, name: str, key: str) -> None:
    """An SQS queue `name` (its settings in the vault secret of the same name) holding one
    S3 notification of an object `key`."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    run_cli(live.env(), "secret", "set", name, input=moto.queue_settings(url))
    record: dict[str, Any] = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"}, "object": {"key": key, "sequencer": "1"}},
    }
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [record]}))


def test_a_notify_payload_the_schema_refuses_is_not_copied_to_the_node_log(
    live: LiveNode, pg: PostgresServer, tmp_path: Path
) -> None:
    """A NOTIFY payload refused by the input_schema (a card number where an integer goes)
    is logged and audited as a refusal at its field, without the refused value."""
    marker = _marker()
    run_cli(live.env(), "secret", "set", "leak-db", input=pg.dsn())
    live.deploy(
        _write(
            tmp_path,
            "leak-notify",
            "triggers:\n  - postgres: {dsn: leak-db, channel: leaknotify}\n"
            "input_schema:\n  type: object\n  properties: {card: {type: integer}}\n",
        )
    )

    def listening() -> bool:
        with pg.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"leaknotify\"'"
            ).fetchone()
        return bool(row and row[0])

    _until(listening, "the node's LISTEN")
    with pg.connect() as conn:
        conn.execute("SELECT pg_notify('leaknotify', %s)", (json.dumps({"card": marker}),))
    _until(lambda: "leaknotify was not taken" in _node_log(live), "the refusal's log line")
    assert "does not match the function's schema at /card" in _node_log(live)
    _assert_nowhere(live, marker)
    run_cli(live.env(), "rm", "leak-notify")


def test_an_sqs_record_the_schema_refuses_is_not_copied_to_the_node_log(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """An S3 notification from SQS whose object key the input_schema refuses (a file name
    holding personal data) is logged at each receive as a refusal at its field, without
    the key."""
    marker = _marker()
    _queue_with_key(live, moto, "leak-keys", f"in/{marker}")
    schema = {
        "type": "object",
        "properties": {
            "Records": {
                "type": "array",
                "items": {
                    "properties": {
                        "s3": {
                            "properties": {
                                "object": {"properties": {"key": {"pattern": "^in/ok-"}}}
                            }
                        }
                    }
                },
            }
        },
    }
    live.deploy(
        _write(
            tmp_path,
            "leak-sqs",
            "triggers:\n  - s3:\n      source: sqs\n      secret: leak-keys\n"
            f"input_schema: {json.dumps(schema)}\n",
        )
    )
    _until(lambda: "leak-sqs: message" in _node_log(live), "the refusal's log line")
    run_cli(live.env(), "rm", "leak-sqs")
    assert "does not match the function's schema at /Records/0/s3/object/key" in _node_log(live)
    _assert_nowhere(live, marker)


FAILING = """\
def handler(event, context):
    raise RuntimeError("not yet")
"""


def _database_bytes(live: LiveNode) -> bytes:
    """The node's SQLite database as it is on disk (the file and its write-ahead log)."""
    return b"".join(
        path.read_bytes() for path in sorted(live.data_dir.glob("donjon.db*")) if path.is_file()
    )


def test_a_redriven_event_the_new_schema_refuses_is_not_written_in_the_clear(
    live: LiveNode, tmp_path: Path
) -> None:
    """An async event dead-lettered, then redriven under a version whose schema refuses it:
    dead again with InvalidInput, and its refused value (sealed in the event) is not copied
    in the clear into the database's error column, the node's log or the audit log."""
    marker = _marker()
    fn = _write(tmp_path, "leak-redrive", "retry: {attempts: 1}\n")
    (fn / "main.py").write_text(FAILING)
    live.deploy(fn)
    with live.client() as c:
        r = c.post(
            "/v1/functions/leak-redrive/invoke",
            json={"card": marker},
            headers={"prefer": "respond-async"},
        )
    assert r.status_code == 202, r.text
    invocation = r.json()["invocation_id"]
    assert wait_for(live, invocation)["status"] == "dead"
    (fn / "donjon.yaml").write_text(
        (fn / "donjon.yaml").read_text()
        + "input_schema:\n  type: object\n  properties: {card: {type: integer}}\n"
    )
    live.deploy(fn)
    with live.client() as c:
        assert c.post(f"/v1/dlq/{invocation}/redrive").status_code == 200
    ended = wait_for(live, invocation)
    assert ended["status"] == "dead", ended
    assert ended["error"]["type"] == "InvalidInput", ended
    assert marker.encode() not in _database_bytes(live)
    assert "/card (type)" in ended["error"]["message"], ended
    _assert_nowhere(live, marker)


def test_an_s3_object_key_is_not_copied_into_the_audit_log(
    live: LiveNode, moto: MotoServer, tmp_path: Path
) -> None:
    """An S3 notification from SQS whose object key holds personal data runs the function;
    the key (in the event, and in its delivery id) is in no audit record, alert, metric or
    node log line."""
    marker = _marker()
    _queue_with_key(live, moto, "leak-taken", f"in/{marker}.pdf")
    live.deploy(
        _write(tmp_path, "leak-taken", "triggers:\n  - s3: {source: sqs, secret: leak-taken}\n")
    )

    def ran() -> bool:
        out = run_cli(live.env(), "logs", "leak-taken", "-n", "10").stdout
        return "END" in out

    _until(ran, "the notification's call")
    run_cli(live.env(), "rm", "leak-taken")
    _assert_nowhere(live, marker)
