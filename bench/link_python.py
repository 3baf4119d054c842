"""The gateway's side of a warm worker's channel per call, outside the node: counted.

    .venv/bin/python bench/link_python.py [--calls 2000] [--mode count|callgrind]

`bench/worker_python.py`'s worker (the installed runtime's `serve_channel` with the
bench's handler, on one end of a socketpair) answers calls that a second process
makes through the installed gateway's `WarmLink.call` (sandbox/warmlink.py) on
uvloop, as the node's loop does: the token, the context and the event out, the
reply's head, body and end-of-call frame read back and checked. What is measured
is that second process alone, the gateway's own Python and C per call on the
channel (not `Instance`'s call page, timeouts or reply parsing):

- `count`: Python function calls per call (`sys.setprofile`), after a warm-up;
- `callgrind`: user-space instructions per call by `valgrind --tool=callgrind` on
  the calling process, two runs (N and 3N calls) differenced, as worker_python.py.

Run it with another tree's interpreter to measure that tree (the worker's side, the
same in both, is not measured). docs/performance.md, "The warm worker's Python per
call", has the worker's side.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import worker_python

_HERE = Path(__file__).resolve().parent


async def _calls(fd: int, warmup: int, calls: int, counts: Counter[str] | None) -> None:
    from donjon.sandbox.warmlink import WarmLink

    broken: list[str] = []
    link = WarmLink(socket.socket(fileno=fd), broken.append)
    meta = worker_python._meta()

    tally: Counter[str] = Counter() if counts is None else counts

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            tally[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
        elif event == "c_call":
            tally[f"<C> {getattr(arg, '__qualname__', arg)}"] += 1

    for i in range(warmup + calls):
        if i == warmup:
            gc.freeze()  # as the node freezes its started heap (gateway/heap.py)
            if counts is not None:
                sys.setprofile(hook)
        head, body = await link.call(meta, worker_python._EVENT, None)
        if not head.startswith(b'{"ok":true') or not body.startswith(b'{"message"'):
            raise SystemExit(f"call {i} failed: {head[:200]!r} {body[:200]!r} {broken}")
    sys.setprofile(None)
    link.close()


def drive(fd: int, mode: str, warmup: int, calls: int, out: str) -> None:
    """The gateway's side: `calls` calls after `warmup`, on uvloop."""
    import uvloop

    counts: Counter[str] | None = Counter() if mode == "count" else None
    uvloop.run(_calls(fd, warmup, calls, counts))
    if counts is not None:
        Path(out).write_text(json.dumps({"calls": calls, "counts": counts}))


def _run(mode: str, calls: int, warmup: int, out: str, wrap: list[str]) -> None:
    ours, theirs = socket.socketpair()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    worker = [sys.executable, str(_HERE / "worker_python.py"), "--serve", str(theirs.fileno())]
    served = subprocess.Popen([*worker, "--mode", "cpu"], pass_fds=[theirs.fileno()], env=env)
    theirs.close()
    cmd = [*wrap, sys.executable, __file__, "--drive", str(ours.fileno()), "--mode", mode]
    cmd += ["--calls", str(calls), "--warmup", str(warmup), "--out", out]
    try:
        subprocess.run(cmd, pass_fds=[ours.fileno()], env=env, check=True)
    finally:
        ours.close()
        served.wait(timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--mode", choices=["count", "callgrind"], default="count")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(args.drive, args.mode, args.warmup, args.calls, args.out)
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    import donjon

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    print(f"gateway: {Path(donjon.__file__).parent}")
    tmp = Path(tempfile.mkdtemp(prefix="linkpy-"))
    try:
        if args.mode == "callgrind":
            if not shutil.which("valgrind"):
                raise SystemExit("valgrind is not installed")
            totals = []
            for n in (args.calls, 3 * args.calls):
                cg = tmp / f"cg.{n}"
                wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", "-q"]
                _run("callgrind", n, args.warmup, "", wrap)
                lines = [ln for ln in cg.read_text().splitlines() if ln.startswith("totals:")]
                totals.append(int(lines[0].split()[1]))
            per = (totals[1] - totals[0]) / (2 * args.calls)
            print(f"2 x {args.calls} calls: {per:,.0f} instructions per call (gateway side)")
        else:
            out = tmp / "counts.json"
            _run("count", args.calls, args.warmup, str(out), [])
            worker_python.print_counts(out, args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
