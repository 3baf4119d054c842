"""An async call killed (SIGKILL of the node) the moment its queue row is committed must
not run without its `invocation.enqueue` record. Before, the row was committed and the
record appended after it: a kill between the two left a queued call, which the next start
ran, that the log never said was accepted. The enqueue is now noted in the journal of
calls in flight (audit/inflight.py) before its commit; the next start appends the record
of each noted call whose row is stored, marked `recovered`, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import bundle, invoke_async
from crash_support import CommitWatch, query, records, verify_intact
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow  # a node of its own, killed on purpose

#: Kills at the queue's commit, at most: the kill follows a poll of the database, so under
#: load it can land past the window (after the record): that try is taken again.
TRIES = 6


def _ids(node: LiveNode) -> list[str]:
    return [str(row[0]) for row in query(node, "SELECT id FROM invocations ORDER BY rowid")]


def _enqueued(node: LiveNode) -> dict[str, list[dict[str, Any]]]:
    """The `invocation.enqueue` records, by invocation id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records(node, "invocation.enqueue"):
        found.setdefault(record["detail"]["invocation_id"], []).append(record)
    return found


def _send(node: LiveNode, n: int) -> httpx.Response | None:
    try:
        answer: httpx.Response = invoke_async(node, "queued", {"n": n})
    except httpx.HTTPError:
        return None  # killed before it answered
    return answer


def _grew(held: int) -> Callable[[list[Any]], bool]:
    return lambda rows: bool(rows[0][0] > held)


def test_async_call_killed_at_its_queue_commit_has_its_enqueue_record(tmp_path: Path) -> None:
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        node.deploy(bundle(tmp_path, "queued", "def handler(event, context):\n    return 1\n"))
        answered = invoke_async(node, "queued", {"n": 9})
        assert answered.status_code == 202, answered.text
        (usual,) = _enqueued(node)[answered.json()["invocation_id"]]
        hit = None
        for n in range(TRIES):
            held = len(_ids(node))
            sql = "SELECT count(*) FROM invocations"
            with CommitWatch(node, sql, _grew(held)) as watch:
                answer = _send(node, n)
                assert watch.fired.wait(60)
            node.serve_again(measured=False)
            ids, enqueued = _ids(node), _enqueued(node)
            assert len(ids) == held + 1, ids
            # Every queued call (each runs) has its record, the one cut by the kill too.
            assert [i for i in ids if i not in enqueued] == [], (answer, enqueued)
            last = enqueued[ids[-1]]
            assert len(last) == 1, last  # once
            if last[0]["detail"].get("recovered"):
                hit = last[0]
                assert answer is None or answer.status_code != 202  # killed before its answer
                break
        assert hit is not None, f"each of {TRIES} kills came after the enqueue's record"
        # Named as the answered call of the same caller and function is.
        assert (hit["actor"], hit["target"], hit["outcome"]) == (
            usual["actor"],
            usual["target"],
            "ok",
        )
        for field in ("trigger", "source", "type", "bytes", "client"):
            assert hit["detail"][field] == usual["detail"][field], field
        assert hit["detail"]["request_id"] != usual["detail"]["request_id"]
        # A clean stop and start: it is not recorded twice.
        node.stop()
        node.serve_again(measured=False)
        assert len(_enqueued(node)[hit["detail"]["invocation_id"]]) == 1
        verify_intact(node)
    finally:
        node.stop()
