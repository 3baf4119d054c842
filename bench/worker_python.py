"""The Python a warm worker executes per call, outside the sandbox: counted, profiled, timed.

    .venv/bin/python bench/worker_python.py [--calls 5000] [--mode cpu|count|profile|callgrind]

Starts a process that serves the installed runtime's warm loop
(`donjon.sandbox.runtime.call.serve_channel`, the code a warm worker runs once
its sandbox is set up) with the bench's handler on one end of a socketpair, and
drives it from this process as the gateway does: one call at a time, the call's
token, a context shaped as `gateway/invoke.py` writes it, and the event in one
write; the reply's head, body and end-of-call frame read back. No sandbox, call
filter or supervisor: what is left is the worker's own Python and its system
calls, without the noise of the node. The modes:

- `cpu`: the worker's CPU per call (/proc/PID/schedstat, ns on the CPU).
- `count`: Python function calls per call (`sys.setprofile`, Python and C
  functions alike), the total and the most frequent, counted after a warm-up.
- `profile`: cProfile's top functions by own time per call (the profiler's own
  cost inflates every figure; the order is what it shows).
- `callgrind`: instructions per call, by `valgrind --tool=callgrind` on the worker:
  two runs of `--calls` and 3x `--calls` calls, the difference divided by the
  difference of the calls (start and end cancel out). Deterministic, so a
  before/after needs no alternation against a busy machine.

Run it with another tree's interpreter to measure that tree's runtime (the script
imports only the installed `donjon`): `/work/wt-base32/.venv/bin/python
bench/worker_python.py`. docs/performance.md, "The warm worker's Python per call".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

_LEN = struct.Struct(">I")
_HANDLER = Path(__file__).resolve().parent / "handler" / "main.py"
_EVENT = b'{"name": "bench"}'


def _meta() -> bytes:
    """A call's context as the gateway writes it for the bench's function (no secrets)."""
    return (
        '{"request_id": "0123456789abcdef0123456789abcdef", "function": "bench"'
        f', "version": 1, "memory_mb": 128, "deadline": {time.time() + 3600!r}'
        ', "principal": "key:bench", "secrets": {}}'
    ).encode()


def _frames(*payloads: bytes) -> bytes:
    return b"".join(_LEN.pack(len(p)) + p for p in payloads)


class _Replies:
    """Reads a reply's frames (head, body, end of call) from the worker's end."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def frame(self) -> bytes:
        while True:
            if len(self._buf) >= 4:
                (size,) = _LEN.unpack_from(self._buf)
                if len(self._buf) >= 4 + size:
                    out, self._buf = self._buf[4 : 4 + size], self._buf[4 + size :]
                    return out
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError("the worker closed the channel")
            self._buf += chunk


def _drive(sock: socket.socket, calls: int) -> None:
    replies = _Replies(sock)
    meta = _meta()
    for i in range(calls):
        token = i.to_bytes(16, "big")
        sock.sendall(_frames(token, meta, _EVENT))
        head = json.loads(replies.frame())
        body = replies.frame()
        if not head.get("ok") or not body.startswith(b'{"message"'):
            raise SystemExit(f"call {i} failed: {head} {body[:200]!r}")
        if replies.frame() != b"\x00end:" + token:
            raise SystemExit(f"call {i}: no end-of-call frame")


def _handler() -> Any:
    spec = importlib.util.spec_from_file_location("bench_handler", _HANDLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def serve(fd: int, mode: str, warmup: int, out: str) -> None:
    """The worker's side: the runtime's warm loop on fd `fd` until the channel closes."""
    from donjon.sandbox.runtime.call import serve_channel
    from donjon.sandbox.runtime.policy_hooks import CallWatch

    sock = socket.socket(fileno=fd)
    handler = _handler()
    watch = CallWatch({})
    if mode == "count":
        counts: Counter[str] = Counter()
        seen = [0]

        def hook(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                code = frame.f_code
                if code is handler.__code__:
                    seen[0] += 1
                if seen[0] > warmup:
                    counts[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
            elif event == "c_call" and seen[0] > warmup:
                counts[f"<C> {getattr(arg, '__qualname__', arg)}"] += 1

        sys.setprofile(hook)
        try:
            serve_channel(sock, handler, watch, None)
        finally:
            sys.setprofile(None)
        Path(out).write_text(json.dumps({"calls": seen[0] - warmup, "counts": counts}))
    elif mode == "profile":
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(serve_channel, sock, handler, watch, None)
        pstats.Stats(profiler).dump_stats(out)
    else:
        serve_channel(sock, handler, watch, None)


def _start(mode: str, warmup: int, out: str, wrap: list[str]) -> tuple[Any, socket.socket]:
    ours, theirs = socket.socketpair()
    cmd = [*wrap, sys.executable, __file__, "--serve", str(theirs.fileno()), "--mode", mode]
    cmd += ["--warmup", str(warmup), "--out", out]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dicts' layout in every run
    proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env)
    theirs.close()
    return proc, ours


def _cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _run(mode: str, calls: int, warmup: int, out: str, wrap: list[str] | None = None) -> float:
    """Serve `warmup` then `calls` calls; the worker's CPU per call in µs (cpu mode)."""
    proc, sock = _start(mode, warmup, out, wrap or [])
    try:
        _drive(sock, warmup)
        before = _cpu_ns(proc.pid)
        _drive(sock, calls)
        used = _cpu_ns(proc.pid) - before
    finally:
        sock.close()
        proc.wait(timeout=600)
    return used / calls / 1000


def _callgrind(calls: int, warmup: int, tmp: Path) -> float:
    """Instructions per call: the runs' totals differ by 2 * `calls` calls."""
    totals = []
    for n in (calls, 3 * calls):
        cg = tmp / f"cg.{n}"
        wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", "-q"]
        _run("cpu", n, warmup, str(tmp / "unused"), wrap)
        events = [ln for ln in cg.read_text().splitlines() if ln.startswith("totals:")]
        totals.append(int(events[0].split()[1]))
    return (totals[1] - totals[0]) / (2 * calls)


def print_counts(out: Path, top: int) -> None:
    """What a `count` run wrote: function calls per call, the total and the `top` most."""
    data = json.loads(out.read_text())
    n, counts = data["calls"], Counter(data["counts"])
    print(f"{n} calls: {sum(counts.values()) / n:.1f} function calls per call")
    for name, c in counts.most_common(top):
        print(f"  {c / n:6.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--mode", choices=["cpu", "count", "profile", "callgrind"], default="cpu")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.mode, args.warmup, args.out)
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    import donjon

    where = Path(donjon.__file__).parent
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    print(f"runtime: {where}")
    tmp = Path(tempfile.mkdtemp(prefix="workerpy-"))
    try:
        if args.mode == "cpu":
            us = _run("cpu", args.calls, args.warmup, "")
            print(f"{args.calls} calls: worker CPU {us:.1f} µs per call")
        elif args.mode == "callgrind":
            if not shutil.which("valgrind"):
                raise SystemExit("valgrind is not installed")
            per = _callgrind(args.calls, args.warmup, tmp)
            print(f"2 x {args.calls} calls: {per:,.0f} instructions per call (worker)")
        elif args.mode == "count":
            out = tmp / "counts.json"
            _run("count", args.calls, args.warmup, str(out))
            print_counts(out, args.top)
        else:
            import pstats

            out = tmp / "profile.pstats"
            _run("profile", args.calls, args.warmup, str(out))
            stats = pstats.Stats(str(out))
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
