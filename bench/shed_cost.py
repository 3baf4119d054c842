"""The gateway's CPU per call shed from its request head (issue 14, target 6).

    .venv/bin/python bench/shed_cost.py [--rounds 5] [--seconds 3] [--connections 32]

Under a 4x overload the node spends its core answering the excess (docs/performance.md,
"Issue 14, the twelfth round"): what one such answer costs sets how long the event
loop's turns are, and so the accepted calls' latency. This measures that cost alone.

A node of its own (tests/harness.py), one warm function at `concurrency: 1` whose
handler sleeps, `DONJON_MAX_QUEUED_PER_FUNCTION=1`: two calls are sent and left
waiting (one holds the slot, one the queue's only place), so every further call is
shed from its head (gateway/early_shed.py). Then, each round, the closed-loop client
(bench/loadgen.py) sends calls on `--connections` keep-alive connections for
`--seconds`; every answer must be that 503. The figure is the serve process's own CPU
(user + system, from /proc: the gateway's loop; the audit writer and the sandbox are
other processes) over the answers, and the median of the rounds is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import loadgen

#: The function that holds its one slot (and the call queued behind it) for the bench.
HELD = """\
import time


def handler(event, context):
    time.sleep(120)
    return event
"""
MANIFEST = "isolation: warm\ntimeout_s: 150\nlimits: {concurrency: 1}\n"
UNTHROTTLED = {"rate": "1000000/second", "burst": 1000000, "concurrency": 100000}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hold(node: Any, tmp: Path) -> dict[str, str]:
    """Deploy `held` on `node` and leave two calls waiting (the slot, then the queue's
    one place; the node needs `DONJON_MAX_QUEUED_PER_FUNCTION=1`), so that every further
    call is shed from its head. The headers of a key that may invoke it."""
    from async_support import bundle

    node.deploy(bundle(tmp / "src", "held", HELD, MANIFEST))
    key = node.create_key("bench-held", "invoker", ["held"], UNTHROTTLED)["key"]

    def call() -> None:
        try:
            with node.client(key) as c:
                c.post("/v1/functions/held/invoke", json={}, timeout=150)
        except Exception:  # ended with the node: only the hold matters
            pass

    for _ in range(2):
        threading.Thread(target=call, daemon=True).start()
        time.sleep(1.0)  # taken before the next is sent
    return {"content-type": "application/json", "authorization": f"Bearer {key}"}


def refusals(req: loadgen.Request, pid: int, connections: int, seconds: float) -> dict[str, Any]:
    """One round of the closed loop against a target that refuses every call: the
    answers, their rate and the CPU process `pid` used for them (every answer must be a
    refusal)."""
    before = cpu_s(pid)
    out = loadgen.run(req, connections, seconds)
    used = cpu_s(pid) - before
    if out["errors"] != out["requests"]:
        raise SystemExit(f"not every answer was a refusal: {out}")
    return {"answers": out["requests"], "rps": out["rps"], "cpu_s": used}


def main() -> None:
    from harness import start_node

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    env = {"DONJON_MAX_QUEUED_PER_FUNCTION": "1"}
    with tempfile.TemporaryDirectory(prefix="donjon-shedcost-") as tmp:
        os.chmod(tmp, 0o755)
        node = start_node(Path(tmp) / "node", env)
        try:
            headers = hold(node, Path(tmp))
            url = f"{node.url}/v1/functions/held/invoke"
            req = loadgen.Request(url, b"{}", headers, node.cert)
            loadgen.run(req, args.connections, 1.0)  # warm up
            rounds = []
            for _ in range(max(1, args.rounds)):
                rounds.append(refusals(req, node.proc.pid, args.connections, args.seconds))
                r = rounds[-1]
                sys.stderr.write(
                    f"  {r['answers']} refusals, {r['rps']:.0f}/s, gateway "
                    f"{r['cpu_s'] / r['answers'] * 1e6:.1f} us each\n"
                )
            per = [r["cpu_s"] / r["answers"] * 1e6 for r in rounds]
            print(
                json.dumps(
                    {
                        "rounds": rounds,
                        "us_per_refusal": per,
                        "median_us_per_refusal": statistics.median(per),
                    },
                    indent=2,
                )
            )
        finally:
            node.stop()


if __name__ == "__main__":
    main()
