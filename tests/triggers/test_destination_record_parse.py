"""A destination record is built on the node's one event loop: it parses no more of the
invocation's event and result than MAX_RECORD_PAYLOAD (past it, the payload is null).

Before: an async call of a function naming a destination had its whole result (6 MiB,
`[0, 0, ...]`) parsed and serialised again on the loop for the record, twice when the
record then proved too large: a fraction of a second of every tenant's time per call.
"""

from __future__ import annotations

import json

import pytest

from donjon.triggers.queue import Outcome
from donjon.triggers.queue.destinations import MAX_RECORD_PAYLOAD, destination_event
from queue_support import queued

_LARGE = json.dumps([0] * 3_000_000, separators=(",", ":")).encode()  # 6 MiB


@pytest.mark.parametrize("limit", [6 * 1024 * 1024, 1024 * 1024, None])
def test_large_result_is_not_parsed_for_the_record(
    parsed_json: list[int], limit: int | None
) -> None:
    """A 6 MiB result (and event) is null in the record, and never parsed."""
    event = destination_event(queued(_LARGE), Outcome(True, "r", result=_LARGE), limit)
    assert sum(parsed_json) <= 2 * MAX_RECORD_PAYLOAD, f"parsed {sum(parsed_json)} bytes"
    record = json.loads(event)
    assert record["requestPayload"] is None
    assert record["responsePayload"] is None


def test_small_payloads_are_in_the_record() -> None:
    """Payloads within the bound are in the record, as JSON values."""
    small = json.dumps({"items": [0] * 1000}).encode()
    event = destination_event(queued(small), Outcome(True, "r", result=small), None)
    record = json.loads(event)
    assert record["requestPayload"] == record["responsePayload"] == {"items": [0] * 1000}
