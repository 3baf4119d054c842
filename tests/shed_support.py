"""A node with one slow function at concurrency 1, and reading what it sheds: the
Prometheus metrics and the audit records (the overload attacks in tests/security)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from donjon.store.tables import audit_log
from harness import LiveNode, start_node

SLOW = """\
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}
"""
#: A node where at most one call waits per function (as long as it takes) and the loop's
#: lag sheds nothing (the machine's load must not decide what is shed).
SHEDDING_ENV = {
    "DONJON_MAX_QUEUED_PER_FUNCTION": "1",
    "DONJON_MAX_QUEUE_WAIT_S": "300",
    "DONJON_MAX_LOOP_LAG_S": "0",
}
MANIFEST = """\
name: {name}
handler: main.handler
memory_mb: 64
timeout_s: 60
isolation: warm
limits: {{concurrency: 1}}
"""


@contextlib.contextmanager
def slow_node(tmp_path: Path, name: str, env: dict[str, str]) -> Iterator[LiveNode]:
    """A node started with `env`, with `name` deployed: a warm function at concurrency 1
    whose handler sleeps the event's `sleep` seconds."""
    live = start_node(tmp_path / "data", env)
    fn = tmp_path / name
    fn.mkdir(mode=0o755)
    (fn / "main.py").write_text(SLOW)
    (fn / "donjon.yaml").write_text(MANIFEST.format(name=name))
    fn.chmod(0o755)
    try:
        live.deploy(fn)
        yield live
    finally:
        live.stop()


def metric(node: LiveNode, name: str, **labels: str) -> float:
    """The value of metric `name` with exactly `labels` (0 if not shown)."""
    with node.client() as c:
        text = c.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head in (name, f"{name}{{{want}}}"):
            return float(value)
    return 0.0


def wait_for_metric(node: LiveNode, name: str, value: float, **labels: str) -> None:
    """Poll until metric `name` shows `value` (fails after 60 s)."""
    deadline = time.monotonic() + 60
    while metric(node, name, **labels) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.05)


def saturate(node: LiveNode, function: str, answers: list[Any]) -> list[threading.Thread]:
    """One call of `function` (a slow node's) running for 10 s and one waiting, each on a
    thread of its own that puts its response in `answers`: with a queue of one place, the
    next call is shed. Join the threads before the node stops."""

    def call(sleep: float) -> None:
        answers.append(node.invoke(function, {"sleep": sleep}))

    running = threading.Thread(target=call, args=(10,))
    running.start()
    wait_for_metric(node, "donjon_sandboxes", 1, function=function, state="busy")
    waiting = threading.Thread(target=call, args=(0,))
    waiting.start()
    wait_for_metric(node, "donjon_calls_waiting", 1)
    return [running, waiting]


def audit_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every audit record of the node's SQLite database, in order."""
    engine = create_engine(f"sqlite:///{data_dir / 'donjon.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.record).order_by(audit_log.c.seq))
            return [json.loads(bytes(raw)) for raw in rows.scalars()]
    finally:
        engine.dispose()
