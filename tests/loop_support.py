"""Reading asyncio's slow-callback probe from a node's log: a node started with
`PYTHONASYNCIODEBUG=1` logs each callback that held its event loop past
`slow_callback_duration` (0.1 s), naming the task whose step it was."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from harness import LiveNode

T = TypeVar("T")

#: The environment that turns the probe on, for `start_node` or `serve_again`.
PROBED = {"PYTHONASYNCIODEBUG": "1"}


def slow_request_steps(
    node: LiveNode, start: float, end: float, of: str = "RequestResponseCycle"
) -> list[str]:
    """The probe's lines between `start` and `end` (epoch seconds) about a request's task
    (uvicorn's RequestResponseCycle; `of`: another task's coroutine named so, such as a
    queued delivery's `_guarded`): a step of it held the loop. Read once the node has
    stopped, its log complete."""
    found = []
    for line in (node.data_dir / "serve.log").read_text().splitlines():
        if '"logger": "asyncio"' not in line or " took " not in line:
            continue
        record = json.loads(line)
        at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        if start <= at <= end and of in record["event"]:
            found.append(record["event"][-40:])
    return found


#: Tenant B's function, called while another tenant's large work runs.
TINY = "def handler(event, context):\n    return {'ok': True}\n"


def other_tenant_key(node: LiveNode) -> str:
    """The developer key of tenant B, who deployed its warm `tiny` with it."""
    key: str = node.create_key("tenant-b", "developer", ["tiny"])["key"]
    files = {"donjon.yaml": b"name: tiny\nhandler: main.handler\nisolation: warm\n"}
    deployed = node.deploy_files(key, {**files, "main.py": TINY.encode()})
    assert deployed.status_code == 201, deployed.text
    return key


def items_event(items: list[object]) -> bytes:
    """`{"items": items}` as compact JSON: 900,000 integers are 5.9 MB."""
    return json.dumps({"items": items}, separators=(",", ":")).encode()


def while_another_calls(
    node: LiveNode, key: str, function: str, work: Callable[[], T]
) -> tuple[T, list[int]]:
    """`work()`'s result, done while another tenant (`key`) calls its warm `function` with
    `{}` in a loop, and the statuses of those calls (the function is called once first:
    warm, its calls are all alike)."""
    done = threading.Event()
    statuses: list[int] = []

    def other_tenant() -> None:
        with node.client(key) as c:
            while not done.is_set():
                statuses.append(
                    c.post(f"/v1/functions/{function}/invoke", content=b"{}").status_code
                )

    with node.client(key) as c:
        c.post(f"/v1/functions/{function}/invoke", content=b"{}")
    caller = threading.Thread(target=other_tenant)
    caller.start()
    try:
        result = work()
    finally:
        done.set()
        caller.join(120)
    return result, statuses
