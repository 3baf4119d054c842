"""Reading asyncio's slow-callback probe from a node's log: a node started with
`PYTHONASYNCIODEBUG=1` logs each callback that held its event loop past
`slow_callback_duration` (0.1 s), naming the task whose step it was."""

from __future__ import annotations

import json
from datetime import datetime

from harness import LiveNode

#: The environment that turns the probe on, for `start_node` or `serve_again`.
PROBED = {"PYTHONASYNCIODEBUG": "1"}


def slow_request_steps(node: LiveNode, start: float, end: float) -> list[str]:
    """The probe's lines between `start` and `end` (epoch seconds) about a request's task
    (uvicorn's RequestResponseCycle): a step of a request held the loop. Read once the
    node has stopped, its log complete."""
    found = []
    for line in (node.data_dir / "serve.log").read_text().splitlines():
        if '"logger": "asyncio"' not in line or " took " not in line:
            continue
        record = json.loads(line)
        at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        if start <= at <= end and "RequestResponseCycle" in record["event"]:
            found.append(record["event"][-40:])
    return found
