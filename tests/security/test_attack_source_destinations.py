"""An event source's destination, chosen through a secret, against a real node that has
opened no internal network: the node itself never dials an internal address for it.

A `postgres` trigger's DSN and an `sqs` trigger's `endpoint_url` come from a secret that
whoever may write secrets and deploy (a developer) chooses, and the node opened them
itself, outside any sandbox and outside the egress proxy's rules: the node connected to
any address it reached, its own loopback included, and its source health said whether
something answered (helper-150). Here the "internal service" is a listener on loopback
that counts the connections it is offered; the node's sources must offer it none, and
say why in their outage record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import LiveNode, run_cli, start_node
from sec_support import Listener

PRINTER = """\
def handler(event, context):
    return event
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = start_node(tmp_path_factory.mktemp("dest-node"))  # no internal network opened
    yield node
    node.stop()


@pytest.fixture
def internal() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def _deploy(live: LiveNode, root: Path, name: str, trigger: str) -> None:
    fn = root / name
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        f"triggers:\n  - {trigger}\n"
    )
    (fn / "main.py").write_text(PRINTER)
    live.deploy(fn)


def _outage(live: LiveNode, function: str) -> dict[str, Any] | None:
    with live.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 2000}).json()
    found = [
        r
        for r in records
        if r["action"] == "trigger.source.unavailable" and r["target"] == function
    ]
    return found[-1] if found else None


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


def _refused(live: LiveNode, function: str, internal: Listener, why: str) -> None:
    """The source's outage says `why`, and the internal service was offered nothing."""
    record = _until(lambda: _outage(live, function), f"{function}'s outage record")
    assert why in json.dumps(record), record
    time.sleep(2)  # a source that dialled would have by now: it retries at once, then backs off
    assert internal.accepted == 0
    run_cli(live.env(), "rm", function)


def test_a_dsn_at_an_internal_address_is_never_dialled(
    live: LiveNode, internal: Listener, tmp_path: Path
) -> None:
    secret = f"postgresql://app:pw@127.0.0.1:{internal.port}/orders"
    run_cli(live.env(), "secret", "set", "dest-db", input=secret)
    _deploy(live, tmp_path, "dest-pg", "postgres: {dsn: dest-db, channel: orders}")
    _refused(live, "dest-pg", internal, "not globally routable")


def test_a_dsn_that_would_read_the_nodes_own_files_is_refused(
    live: LiveNode, internal: Listener, tmp_path: Path
) -> None:
    """`passfile` (the node's password file, sent to the named server), `service` (the
    node's service file, which names hosts of its own): neither is read, nothing dialled."""
    for n, extra in enumerate(["passfile=/root/.pgpass", "service=internal"]):
        secret = f"host=127.0.0.1 port={internal.port} dbname=orders {extra}"
        run_cli(live.env(), "secret", "set", f"dest-db{n}", input=secret)
        trigger = f"postgres: {{dsn: dest-db{n}, channel: orders}}"
        _deploy(live, tmp_path, f"dest-pg{n}", trigger)
        _refused(live, f"dest-pg{n}", internal, "which a trigger's DSN may not set")


def test_an_sqs_endpoint_at_an_internal_address_is_never_dialled(
    live: LiveNode, internal: Listener, tmp_path: Path
) -> None:
    endpoint = f"http://127.0.0.1:{internal.port}"
    settings = {
        "queue_url": f"{endpoint}/123456789012/orders",
        "region": "us-east-1",
        "access_key_id": "AKIDEXAMPLEDESTINATION",
        "secret_access_key": "destination-attack-not-a-real-secret",
        "endpoint_url": endpoint,
    }
    run_cli(live.env(), "secret", "set", "dest-queue", input=json.dumps(settings))
    _deploy(live, tmp_path, "dest-sqs", "s3:\n      source: sqs\n      secret: dest-queue")
    _refused(live, "dest-sqs", internal, "not globally routable")
