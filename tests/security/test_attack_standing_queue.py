"""A lasting overload of one function is refused from its standing queue, not served late.

Before: a call was queued while its expected wait stayed within 4 service times, so
under a lasting overload every accepted call waited the whole 4. Now, once every call
that took a slot over an interval waited past the target and the queue overflowed
(sandbox/standing.py, CoDel's rule), a call that would wait past the target gets the
same 503 with Retry-After as the other bounds give, audited the same way, until the
queue drains; then calls queue as before.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from donjon.store.tables import audit_log
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow

SLOW = """\
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}
"""
MANIFEST = """\
name: held
handler: main.handler
memory_mb: 64
timeout_s: 60
isolation: warm
limits: {concurrency: 1}
"""


@pytest.fixture
def held_node(tmp_path: Path) -> Iterator[LiveNode]:
    """Two calls may wait; a standing queue's target 50 ms, its interval 100 ms; no
    shedding for the loop's lag (the machine's load must not decide)."""
    live = start_node(
        tmp_path / "data",
        {
            "DONJON_MAX_QUEUED_PER_FUNCTION": "2",
            "DONJON_MAX_QUEUE_WAIT_S": "300",
            "DONJON_MAX_LOOP_LAG_S": "0",
            "DONJON_SHED_TARGET_MS": "50",
            "DONJON_SHED_INTERVAL_MS": "100",
            "DONJON_AUDIT_DENIAL_WINDOW_S": "3600",
        },
    )
    fn = tmp_path / "held"
    fn.mkdir(mode=0o755)
    (fn / "main.py").write_text(SLOW)
    (fn / "donjon.yaml").write_text(MANIFEST)
    fn.chmod(0o755)
    try:
        live.deploy(fn)
        yield live
    finally:
        live.stop()


def _metric(node: LiveNode, name: str, **labels: str) -> float:
    with node.client() as c:
        text = c.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head in (name, f"{name}{{{want}}}"):
            return float(value)
    return 0.0


def _wait_for(node: LiveNode, name: str, value: float, **labels: str) -> None:
    deadline = time.monotonic() + 60
    while _metric(node, name, **labels) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.02)


def _records(data_dir: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{data_dir / 'donjon.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.record).order_by(audit_log.c.seq))
            return [json.loads(bytes(raw)) for raw in rows.scalars()]
    finally:
        engine.dispose()


def test_standing_queue_of_a_held_function_is_shed(held_node: LiveNode) -> None:
    """A held for 3 s with B and C queued behind it and D refused at the bound: B and C
    each wait far past the target, more than an interval apart, so the queue stands;
    while C runs, E (which would have queued before) gets 503 + Retry-After, counted
    and audited; once the queue has drained, F is served."""
    node = held_node
    assert node.invoke("held", {"sleep": 0.2}).status_code == 200  # a service time
    answers: list[httpx.Response] = []

    def call(sleep: float) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: answers.append(node.invoke("held", {"sleep": sleep}))
        )
        thread.start()
        return thread

    threads = [call(3)]  # A
    _wait_for(node, "donjon_sandboxes", 1, function="held", state="busy")
    threads.append(call(0.3))  # B: runs 0.3 s, so C leaves the queue an interval later
    _wait_for(node, "donjon_calls_waiting", 1)
    threads.append(call(5))  # C
    _wait_for(node, "donjon_calls_waiting", 2)
    overflow = node.invoke("held", {})  # D: past the bound of 2 waiting
    _wait_for(node, "donjon_calls_waiting", 0)  # A and B done, C running
    standing = node.invoke("held", {})  # E: nobody waits, yet the queue stood
    for thread in threads:
        thread.join(120)
    served = node.invoke("held", {})  # F: the queue drained
    assert sorted(r.status_code for r in answers) == [200, 200, 200], [r.text for r in answers]
    assert overflow.status_code == 503, overflow.text
    assert standing.status_code == 503, standing.text
    assert int(standing.headers["retry-after"]) >= 1
    assert standing.json()["detail"].startswith("overloaded:")
    assert served.status_code == 200, served.text
    assert _metric(node, "donjon_rate_limited_total", function="held", limit="overload") == 2
    node.stop()
    sheds = [r for r in _records(node.data_dir) if r["action"] == "node.shed"]
    assert len(sheds) == 2, sheds  # the first at once, the second in an aggregate
    assert sum(r["detail"]["count"] for r in sheds) == 2
    assert sheds[0]["detail"]["reason"] == "overload"
    assert {r["target"] for r in sheds} == {"/v1/functions/held/invoke"}
