"""The scan helper: a child process of the node that runs deploy-time scans.

``python -I -m donjon.scan.worker [--advisories PATH] [--cache-dir DIR]`` loads the
advisory database once (its parsed form cached in DIR), says it is ready, then serves
requests from its stdin one at a time. Each scan runs in a fresh process forked from
the helper (so it shares the loaded database without reloading it) with an
address-space limit (RLIMIT_AS) and a CPU-time limit (RLIMIT_CPU), and is killed when
its wall-clock time is up. After the scan it removes the tree's byte-code that is not
compiled from the source it read (bytecode.py), so what runs is what was scanned.
Whatever a bundle makes the scanner do, it happens in that process: the node only ever
reads a bounded reply.

Protocol (`donjon.scan.isolated` is the other side). A request is one JSON line::

    {"path": "/staging/dir", "timeout_s": 60, "cpu_s": 60, "memory_mb": 1024,
     "egress_networks": ["10.0.0.0/8"]}

(`egress_networks`, optional: the node's DONJON_EGRESS_ALLOW_NETWORKS, for DJ-MF-002.)

The reply is one JSON header line, then `bytes` bytes of body::

    {"outcome": "done" | "timeout" | "cpu" | "memory" | "too-large" | "crashed",
     "bytes": N, "detail": "..."}

With "done", the body is the JSON report (`render_json`) or ``{"error": {...}}`` when the
scan refused the target (`ScanError`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import selectors
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from donjon.egress.addresses import IPNetwork, parse_networks
from donjon.errors import Error
from donjon.scan.bytecode import drop_unverified_bytecode
from donjon.scan.deps.advisories import AdvisoryDB
from donjon.scan.engine import scan_path
from donjon.scan.format import render_json
from donjon.scan.isolated import MAX_REPLY_BYTES

__all__ = ["main"]

_EXIT_MEMORY = 3


def _vm_size() -> int:
    """This process's current address-space size in bytes (0 if unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _scan_child(
    out: int,
    path: str,
    cpu_s: int,
    memory_bytes: int,
    advisories: AdvisoryDB | None,
    egress_networks: tuple[IPNetwork, ...] = (),
) -> int:
    """In the forked process: limit ourselves, scan, write the reply body to `out`."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the protocol's pipes are the helper's alone: nothing the scan
    os.dup2(devnull, 1)  # prints can reach the node
    # Nor its log (the helper's stderr is the node's): the libraries a scan runs log what
    # the bundle holds (Bandit logs a file's name, newlines and all), and a bundle's line
    # stood there as the node's own. A scan's failures come back in its reply.
    os.dup2(devnull, 2)
    limit = _vm_size() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        report = scan_path(
            Path(path), advisories=advisories, whole_tree=True, egress_networks=egress_networks
        )
        # What runs is what was scanned: byte-code not compiled from it, and native modules
        # shadowing it, go (bytecode.py).
        dropped = drop_unverified_bytecode(Path(path))
        if dropped:
            note = f"{dropped} file(s) of code other than the scanned source removed"
            report = dataclasses.replace(report, notes=(*report.notes, note))
        body = render_json(report).encode()
    except MemoryError:
        return _EXIT_MEMORY
    except Error as e:
        body = json.dumps({"error": {"message": e.message, "hint": e.hint}}).encode()
    view = memoryview(body)
    while view:
        view = view[os.write(out, view) :]
    return 0


def _collect(fd: int, pid: int, timeout_s: float, cpu_s: int) -> tuple[bytes, str]:
    """Read the child's reply until EOF, the deadline or the size cap; reap the child."""
    chunks: list[bytes] = []
    size = 0
    outcome = ""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                outcome = "timeout"
                break
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                outcome = "too-large"
                break
            chunks.append(chunk)
    os.close(fd)
    if outcome:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    if outcome:
        return b"", outcome
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        spent = usage.ru_utime + usage.ru_stime
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and spent >= cpu_s):
            return b"", "cpu"
        return b"", f"crashed:signal {sig}"
    code = os.WEXITSTATUS(status)
    if code == _EXIT_MEMORY:
        return b"", "memory"
    if code != 0:
        return b"", f"crashed:exit {code}"
    return b"".join(chunks), "done"


def _serve(request: dict[str, Any], advisories: AdvisoryDB | None) -> tuple[bytes, str]:
    path = str(request["path"])
    timeout_s = float(request["timeout_s"])
    cpu_s = int(request["cpu_s"])
    memory_bytes = int(request["memory_mb"]) * 1024 * 1024
    networks = parse_networks(",".join(str(n) for n in request.get("egress_networks", [])))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the scan process
        code = 1
        try:
            os.close(read_end)
            code = _scan_child(write_end, path, cpu_s, memory_bytes, advisories, networks)
        except MemoryError:
            code = _EXIT_MEMORY
        finally:
            os._exit(code)
    os.close(write_end)
    return _collect(read_end, pid, timeout_s, cpu_s)


def _reply(out: BinaryIO, outcome: str, body: bytes = b"", detail: str = "") -> None:
    header = {"outcome": outcome, "bytes": len(body), "detail": detail}
    out.write(json.dumps(header).encode() + b"\n" + body)
    out.flush()


def _warm_up(advisories: AdvisoryDB | None) -> None:
    """Import what a scan imports lazily (Bandit's plugins...) once, before any fork."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "main.py").write_text("def handler(event, context):\n    return event\n")
        scan_path(Path(tmp), advisories=advisories)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="donjon.scan.worker")
    parser.add_argument("--advisories", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    try:
        advisories = (
            AdvisoryDB.load(args.advisories, cache_dir=args.cache_dir) if args.advisories else None
        )
        _warm_up(advisories)
    except Error as e:
        _reply(out, "error", json.dumps({"message": e.message, "hint": e.hint}).encode())
        return 2
    # Objects made so far are the helper's for good: a forked scan's collector must not
    # walk (and so copy, page by page) the whole advisory database.
    gc.freeze()
    _reply(out, "ready", detail=str(len(advisories) if advisories is not None else 0))
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            body, outcome = _serve(request, advisories)
        except (ValueError, KeyError, TypeError, OSError) as e:
            _reply(out, "crashed", detail=f"bad request: {e}")
            continue
        _reply(out, outcome, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
