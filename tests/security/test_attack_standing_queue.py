"""A lasting overload of one function is refused from its standing queue, not served late.

Before: a call was queued while its expected wait stayed within 4 service times, so
under a lasting overload every accepted call waited the whole 4. Now, once every call
that took a slot over an interval waited past the target and the queue overflowed
(sandbox/standing.py, CoDel's rule), a call that would wait past the target gets the
same 503 with Retry-After as the other bounds give, audited the same way, until the
queue drains; then calls queue as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import LiveNode
from shed_support import audit_records, metric, slow_node, wait_for_metric

pytestmark = pytest.mark.slow


@pytest.fixture
def held_node(tmp_path: Path) -> Iterator[LiveNode]:
    """Two calls may wait; a standing queue's target 50 ms, its interval 100 ms; no
    shedding for the loop's lag (the machine's load must not decide)."""
    with slow_node(
        tmp_path,
        "held",
        {
            "DONJON_MAX_QUEUED_PER_FUNCTION": "2",
            "DONJON_MAX_QUEUE_WAIT_S": "300",
            "DONJON_MAX_LOOP_LAG_S": "0",
            "DONJON_SHED_TARGET_MS": "50",
            "DONJON_SHED_INTERVAL_MS": "100",
            "DONJON_AUDIT_DENIAL_WINDOW_S": "3600",
        },
    ) as live:
        yield live


def _hold_a_b_c(
    node: LiveNode, answers: list[httpx.Response], c_sleep: float
) -> list[threading.Thread]:
    """After one call of 0.2 s (a service time): A holds the only slot for 3 s, B (0.3 s,
    so C leaves the queue an interval after it) and C (`c_sleep`) wait behind it; each
    answer goes to `answers`. Returns once both wait."""
    assert node.invoke("held", {"sleep": 0.2}).status_code == 200

    def call(sleep: float) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: answers.append(node.invoke("held", {"sleep": sleep}))
        )
        thread.start()
        return thread

    threads = [call(3)]  # A
    wait_for_metric(node, "donjon_sandboxes", 1, function="held", state="busy")
    threads.append(call(0.3))  # B
    wait_for_metric(node, "donjon_calls_waiting", 1)
    threads.append(call(c_sleep))  # C
    wait_for_metric(node, "donjon_calls_waiting", 2)
    return threads


def test_standing_queue_of_a_held_function_is_shed(held_node: LiveNode) -> None:
    """A held for 3 s with B and C queued behind it and D refused at the bound: B and C
    each wait far past the target, more than an interval apart, so the queue stands;
    while C runs, E (which would have queued before) gets 503 + Retry-After, counted
    and audited; once the queue has drained, F is served."""
    node = held_node
    answers: list[httpx.Response] = []
    threads = _hold_a_b_c(node, answers, c_sleep=5)
    overflow = node.invoke("held", {})  # D: past the bound of 2 waiting
    wait_for_metric(node, "donjon_calls_waiting", 0)  # A and B done, C running
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
    assert metric(node, "donjon_rate_limited_total", function="held", limit="overload") == 2
    node.stop()
    sheds = [r for r in audit_records(node.data_dir) if r["action"] == "node.shed"]
    assert len(sheds) == 2, sheds  # the first at once, the second in an aggregate
    assert sum(r["detail"]["count"] for r in sheds) == 2
    assert sheds[0]["detail"]["reason"] == "overload"
    assert {r["target"] for r in sheds} == {"/v1/functions/held/invoke"}


def test_unauthenticated_heads_cannot_make_a_queue_stand(held_node: LiveNode) -> None:
    """As above, but D carries no credential: its head would be shed, yet it is not
    refused (the app answers it 401), so the queue never overflowed and E, which the
    bounds admit, queues behind C and is served instead of being shed."""
    node = held_node
    answers: list[httpx.Response] = []
    threads = _hold_a_b_c(node, answers, c_sleep=2)
    anonymous = node.invoke("held", {}, key="")  # D: no credential, the queue is full
    wait_for_metric(node, "donjon_calls_waiting", 0)  # A and B done, C running
    queued = node.invoke("held", {})  # E: one call ahead of it, within every bound
    for thread in threads:
        thread.join(120)
    assert sorted(r.status_code for r in answers) == [200, 200, 200], [r.text for r in answers]
    assert anonymous.status_code == 401, anonymous.text
    assert queued.status_code == 200, queued.text
    assert metric(node, "donjon_rate_limited_total", function="held", limit="overload") == 0
