"""The Python function calls the gateway makes per warm request, counted (issue 14, target 1).

Instruction counts (`gateway_instr.py`) say how much; this says where, in calls. It
starts `donjon serve` through `gateway_stub.py` (the audit writer and the sandbox set
aside; the monitor and the metrics still see every call), deploys the bench's warm
function, warms up, then profiles the loop's thread (cProfile, started and stopped by
signals, so the server's start-up and the deploy are not in it) over N keyed invoke
requests on a few keep-alive connections, and prints:

- the function calls per request in all (cProfile's count: Python functions and the
  built-ins they call), and
- the functions with the most calls per request, and the most inclusive time.

    python bench/gateway_calls.py [--python PY] [--requests 3000] [--connections 8]
        [--top 40] [--stats FILE] [--respond-async]

`--respond-async`: each request asks `Prefer: respond-async`, so what is counted is the
async enqueue (admission, the queue's commit, its `invocation.enqueue` record, the 202);
the queued calls run meanwhile in the node's workers, off the profiled requests' path
only in part (their own calls are counted too: compare trees with the same flag).

Profiling inflates small calls, so the times are shares, not costs; the call counts
are exact. Pass another tree's interpreter to count that tree. For measurement only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def _name(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})"


def profile(
    python: str, requests: int, connections: int, warmup: int, out: Path, *, queued: bool = False
) -> None:
    """Profile `requests` warm invoke requests in the stubbed node run by `python`."""
    import sandboxes
    from gateway_cpu import _bench_key, start_stub
    from gateway_instr import _fixed_count, _wait_ready

    node, tmp = start_stub(python, "gwcalls", env={"DONJON_BENCH_PROFILE": str(out)})
    url, proc = node.url, node.proc
    try:
        _wait_ready(url + "/healthz", node.tls, proc, tmp / "serve.log")
        node.deploy(sandboxes.write_bundle(tmp / "fn", "bench-warm", "warm"))
        key = _bench_key(node)
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        if queued:
            headers["prefer"] = "respond-async"
        args = (url + "/v1/functions/bench-warm/invoke", b'{"name":"x"}', headers, node.cert)
        asyncio.run(_fixed_count(*args, warmup, connections))
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(0.2)
        bad = asyncio.run(_fixed_count(*args, requests, connections))
        os.kill(proc.pid, signal.SIGUSR2)
        while not out.exists():
            time.sleep(0.1)
        time.sleep(0.5)  # the dump is written in one go; let it finish
        if bad:
            print(f"warning: {bad} of {requests} answers were not 2xx", file=sys.stderr)
    finally:
        node.stop()


def report(stats_file: Path, requests: int, top: int) -> None:
    stats = pstats.Stats(str(stats_file))
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats' own table
    total_calls = sum(nc for _cc, nc, _tt, _ct, _callers in entries.values())
    total_time = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values())
    print(f"{total_calls / requests:.1f} function calls per request ({requests} requests)")
    print(f"\nmost calls per request (top {top}): calls/req, own ms/req, inclusive ms/req")
    by_calls = sorted(entries.items(), key=lambda item: -item[1][1])
    for func, (_cc, nc, tt, ct, _callers) in by_calls[:top]:
        print(
            f"{nc / requests:8.2f} {tt / requests * 1e3:7.4f} {ct / requests * 1e3:7.4f}"
            f"  {_name(func)}"
        )
    print(f"\nmost inclusive time (top {top}): share of profiled time, calls/req")
    by_cum = sorted(entries.items(), key=lambda item: -item[1][3])
    for func, (_cc, nc, _tt, ct, _callers) in by_cum[:top]:
        print(f"{ct / total_time * 100:6.1f}% {nc / requests:7.2f}  {_name(func)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--stats", help="keep the cProfile stats here (pstats format)")
    parser.add_argument("--respond-async", action="store_true", help="async invoke requests")
    args = parser.parse_args()
    out = Path(args.stats or tempfile.mkdtemp(prefix="gwcalls-") + "/calls.prof")
    out.unlink(missing_ok=True)  # the server writes it when the window ends
    profile(
        args.python, args.requests, args.connections, args.warmup, out, queued=args.respond_async
    )
    report(out, args.requests, args.top)


if __name__ == "__main__":
    main()
