"""A destination's record of large payloads is made in the large events' child
(gateway/deliveries.py), and is the record made on the loop, byte for byte.

Two payloads of up to 256 KiB parsed and the record encoded (up to three times when it
proves larger than the destination's body limit) took 30-67 ms of the node's event loop
a record, every tenant's calls waiting.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ParamSpec, TypeVar, cast

import pytest

from donjon.gateway.deliveries import _destination_event
from donjon.gateway.large_events import LargeEvents
from donjon.triggers.queue import Outcome
from donjon.triggers.queue.destinations import MAX_RECORD_PAYLOAD, destination_event
from queue_support import queued

P = ParamSpec("P")
T = TypeVar("T")

#: A payload just within MAX_RECORD_PAYLOAD, the costliest to parse: a number every 2 bytes.
ZEROS = ("[" + ",".join(["0"] * (MAX_RECORD_PAYLOAD // 2 - 2)) + "]").encode()
SMALL = json.dumps({"items": [0] * 1000}).encode()


class Counted(LargeEvents):
    """The large events' child, counting the work it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.made_count = 0

    async def made(self, caller: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        self.made_count += 1
        return await super().made(caller, fn, *args, **kwargs)


def _untimed(event: bytes) -> bytes:
    """`event` with its record's timestamp (to the second, when it was made) blanked."""
    return re.sub(rb'"timestamp": "[0-9T:Z-]+"', b'"timestamp": ""', event, count=1)


@pytest.mark.parametrize("limit", [None, 1 << 20, 300 * 1024])
@pytest.mark.parametrize("ok", [True, False])
def test_a_record_made_in_the_child_is_the_one_made_on_the_loop(
    limit: int | None, ok: bool
) -> None:
    """Large payloads (a success's event and result; a failure's event): the record made in
    the child is the loop's, byte for byte (its payloads nulled past the limit alike); small
    ones are made on the loop, the child not asked."""
    large = Counted()
    node = cast(Any, SimpleNamespace(large_events=large))
    outcome = (
        Outcome(True, "r", result=ZEROS)
        if ok
        else Outcome(False, "r", status=500, error_type="Boom", error="it failed")
    )
    try:
        child = asyncio.run(_destination_event(node, queued(ZEROS), outcome, limit))
        assert large.made_count == 1
        small = asyncio.run(_destination_event(node, queued(SMALL), Outcome(True, "r"), limit))
        assert large.made_count == 1
    finally:
        large.close()
    assert _untimed(child) == _untimed(destination_event(queued(ZEROS), outcome, limit))
    assert _untimed(small) == _untimed(destination_event(queued(SMALL), Outcome(True, "r"), limit))
    record = json.loads(child)
    nulled = limit is not None and limit < 2 * len(ZEROS)
    assert (record["requestPayload"] is None) == nulled
