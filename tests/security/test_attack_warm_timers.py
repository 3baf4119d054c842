"""A warm worker runs no function code between calls, by thread or by timer signal.

Between calls a warm worker must keep nothing running (docs/security.md, "The warm
channel"): the supervisor kills one seen with a second thread. A timer signal needs no
thread: a handler that arms `setitimer` leaves the worker single-threaded, and the
kernel interrupts its wait for the next call to run the function's signal handler, as
often as the timer says. Before the fix: armed at 20 Hz, the handler ran about 40
times in the 2 s between two calls (and, as a test showed on a live node, a handler
burning 20 ms a tick used 1.3 s of CPU in 12 s between calls, under the idle look's
1 s a 5 s), and the worker was not killed.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness import LiveNode

_TIMER = """\
import signal

TICKS = {"n": 0}


def _tick(signum, frame):
    TICKS["n"] += 1


def handler(event, context):
    if event["op"] == "arm":
        signal.signal(signal.SIGALRM, _tick)
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        TICKS["n"] = 0
        return {"armed": True}
    seen = TICKS["n"]
    signal.setitimer(signal.ITIMER_REAL, 0)
    return {"ticks": seen}
"""


def test_timer_signal_handler_does_not_run_between_warm_calls(
    node: LiveNode, tmp_path: Path
) -> None:
    """A 20 Hz timer armed by one warm call has its handler run at most a tick or two by the
    next call 2 s later (a pending signal is taken when that call begins), not 40 times."""
    name = "sec-warm-timer"
    (tmp_path / "main.py").write_text(_TIMER)
    (tmp_path / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: warm\n"
    )
    try:
        node.deploy(tmp_path)
        armed = node.invoke(name, {"op": "arm"})
        assert armed.status_code == 200, armed.text
        time.sleep(2.0)
        counted = node.invoke(name, {"op": "count"})
        assert counted.status_code == 200, counted.text
        assert counted.json()["ticks"] <= 3, counted.json()
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{name}")
