"""Overload (issue 14, point 6): offer 4x the sustainable rate, and see what the node does.

    .venv/bin/python bench/overload.py [--quick] [--pin] [--rounds N] [--sleep-ms MS] [--factor F]

A node of its own. With `--sleep-ms`, the function's handler also sleeps that long: its
own service time, not the gateway's loop, then sets the sustainable rate, so the
function's queue (sandbox/backlog.py, standing.py) is what an overload fills.

Called from bench_invoke.py on its node's warm function. The steps:
1. unloaded latency: one connection, one call after the other (p50/p99);
2. the sustainable rate: the closed-loop client on 32 connections (req/s);
3. an open-loop load (bench/loadgen.py `open_loop`) at `factor` (4) times that
   rate, on 256 connections (from several loopback addresses: the node caps
   connections per client at 64), bounded in count
   (rate x seconds) and time; each answer is sorted by status: accepted (2xx),
   shed (503 or 429), other;
4. the gateway's RSS before, its peak during (sampled every 50 ms), and after
   (2 s later), and how many calls the node says it shed (/metrics);
5. where the time went: the CPU of the node's whole process tree (gateway, audit
   writer, sandboxes) and of the load client during step 3, and of each accepted
   call the time from when it was due to when a connection took it (the client's
   wait: every connection busy) and from then to its answer (the node's part);
6. the client's own floor (`client_floor`): the same open loop at the same rate
   against a bare server (uvicorn and a raw app, no worker, writer or control): the
   p99 this client reports against a server that does next to nothing.

With `pin` (`--pin`) the node's processes run on CPU 0 and the load clients on the
others, so the client never takes the node's core (and vice versa): the same
steps, one core for the node.

Verdicts (report.py): p99 of the accepted calls within 3x the unloaded p99; the
shed answers fast (their p99 beside the accepted p99); RSS bounded (the peak
minus before, and after minus before).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: The bench's key is given limits of its own, far above anything it can reach: it
#: measures the gateway, not the per-principal limits (docs/limits.md, issue 15).
UNTHROTTLED = {"rate": "1000000/second", "burst": 1000000, "concurrency": 100000}

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import loadgen
import sandboxes

BODY = b'{"name": "bench"}'
#: The bench handler with a sleep: `--sleep-ms`.
SLEEPING = """\
import time

from bench_handler import handler as _handler


def handler(event, context):
    time.sleep({seconds!r})
    return _handler(event, context)
"""
FACTOR = 4.0
CONNECTIONS = 256


def rss(pid: int) -> int:
    """Resident bytes of one process (0 once gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        return 0


class PeakRss:
    """Samples a process's RSS on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of `pid`'s tree."""
    ticks = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    """CPU seconds used by this process's waited-for children (the load clients)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of every process of `pid`'s tree on `cpus` (later children inherit)."""
    for p in tree(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            continue


def shed_count(url: str, cafile: str | None, admin_key: str) -> float:
    """The node's own count of shed calls (donjon_rate_limited{limit="overload"})."""
    import httpx

    r = httpx.get(
        f"{url}/metrics",
        verify=cafile or False,
        headers={"authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith("donjon_rate_limited_total{") and 'limit="overload"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def client_floor(
    rate: float, seconds: float, tmp: Path, cert: str, key: str, pin: bool = False
) -> dict[str, Any]:
    """The load client's own p99 at `rate`: the same open loop (256 connections, the
    same body) against a bare server (bench/warm_floor.py's `bare`: uvicorn and a raw
    ASGI app over the same TLS, no worker, no writer, no control), pinned as the node
    was: the p99 this client reports against a server that does next to nothing,
    beside target 6's bar."""
    import warm_floor

    proc, port = warm_floor.start(tmp, cert, key, "bare")
    own = os.sched_getaffinity(0)
    try:
        if pin:
            pin_tree(proc.pid, {0})
            os.sched_setaffinity(0, (own - {0}) or own)
        req = loadgen.Request(f"https://127.0.0.1:{port}{warm_floor.PATH}", BODY, {}, cert)
        loadgen.run(req, 8, 1)
        cpu = tree_cpu(proc.pid)
        load = loadgen.open_loop(req, rate, seconds, CONNECTIONS)
        cpu = tree_cpu(proc.pid) - cpu
    finally:
        os.sched_setaffinity(0, own)
        warm_floor.stop(proc)
    acc = load["accepted"]
    sys.stderr.write(
        f"  the client's own floor: {rate:.0f} req/s offered to a bare server: accepted "
        f"p99 {acc['p99_ms']:.1f} ms (waited for a connection p99 "
        f"{load['accepted_queued']['p99_ms']:.1f} ms, sent to answered p99 "
        f"{load['accepted_wire']['p99_ms']:.1f} ms), server CPU {cpu:.2f} s\n"
    )
    return {"open_loop": load, "server_cpu_s": cpu}


def run(
    base_url: str,
    function: str,
    headers: dict[str, str],
    cafile: str | None,
    pid: int,
    admin_key: str,
    seconds: float,
    pin: bool = False,
    factor: float = FACTOR,
) -> dict[str, Any]:
    """The steps against `function` on the node at `base_url` (server pid `pid`); with
    `pin`, the node on CPU 0 and the clients (this process's children) on the rest;
    `factor` times the sustainable rate offered."""
    own = os.sched_getaffinity(0)
    if pin:
        pin_tree(pid, {0})
        os.sched_setaffinity(0, (own - {0}) or own)
    try:
        return _run(base_url, function, headers, cafile, pid, admin_key, seconds, pin, factor)
    finally:
        os.sched_setaffinity(0, own)


def _run(
    base_url: str,
    function: str,
    headers: dict[str, str],
    cafile: str | None,
    pid: int,
    admin_key: str,
    seconds: float,
    pin: bool,
    factor: float,
) -> dict[str, Any]:
    req = loadgen.Request(f"{base_url}/v1/functions/{function}/invoke", BODY, headers, cafile)
    loadgen.run(req, 8, 1)  # warm up: sandboxes started, caches full
    unloaded = loadgen.run(req, 1, max(1.0, seconds / 2))
    shed_before = shed_count(base_url, cafile, admin_key)
    sustainable = loadgen.run(req, 32, seconds)
    # Sheds of the node's own (at the pool's bounds or for the loop's lag) in the closed
    # loop: must be 0. Its errors may also be the loop-lag bound's 503s (not counted here).
    sustainable_shed = shed_count(base_url, cafile, admin_key) - shed_before
    # Refusals are answers too: the rate is of the calls served (errors are refusals here).
    served = sustainable["rps"] * (1 - sustainable["errors"] / max(1, sustainable["requests"]))
    rate = factor * served
    shed_before = shed_count(base_url, cafile, admin_key)
    before = rss(pid)
    node_cpu, load_cpu, wall = tree_cpu(pid), client_cpu(), time.monotonic()
    with PeakRss(pid) as peak:
        load = loadgen.open_loop(req, rate, seconds, CONNECTIONS)
    node_cpu, load_cpu = tree_cpu(pid) - node_cpu, client_cpu() - load_cpu
    wall = time.monotonic() - wall  # the client's whole run: its 256 handshakes too
    time.sleep(2)
    after = rss(pid)
    out = {
        "unloaded": unloaded,
        "sustainable_rps": served,
        "sustainable_errors": sustainable["errors"],
        "sustainable_node_shed": sustainable_shed,
        "offered_rps": rate,
        "open_loop": load,
        "node_shed": shed_count(base_url, cafile, admin_key) - shed_before,
        "rss_before": before,
        "rss_peak": max(peak.peak, before),
        "rss_after": after,
        "pinned": pin,
        "node_cpu_s": node_cpu,
        "client_cpu_s": load_cpu,
        "load_wall_s": wall,
    }
    acc, shed = load["accepted"], load["shed"]
    sys.stderr.write(
        f"  overload: sustainable {served:.0f} req/s "
        f"({sustainable['errors']} errors, {sustainable_shed:.0f} shed by the node), "
        f"offered {rate:.0f} req/s "
        f"({load['offered']} requests): {load['refusals']}, ok {acc['count']}, "
        f"errors {load['errors']}; "
        f"accepted p99 {acc['p99_ms']:.1f} ms (unloaded p99 {unloaded['p99_ms']:.1f} ms), "
        f"shed p50/p99 {shed['p50_ms']:.1f}/{shed['p99_ms']:.1f} ms; RSS "
        f"{before / 2**20:.0f} -> {out['rss_peak'] / 2**20:.0f} -> {after / 2**20:.0f} MiB; "
        f"accepted: waited for a connection p99 {load['accepted_queued']['p99_ms']:.1f} ms, "
        f"sent to answered p99 {load['accepted_wire']['p99_ms']:.1f} ms; CPU in "
        f"{wall:.1f} s: node {node_cpu:.2f} s, client {load_cpu:.2f} s"
        f"{' (node on CPU 0, client apart)' if pin else ''}\n"
    )
    return out


def main() -> None:
    from harness import start_node

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", action="append", default=[], help="DONJON_X=V for the node")
    parser.add_argument("--pin", action="store_true", help="node on CPU 0, client on the rest")
    parser.add_argument("--rounds", type=int, default=1, help="runs on the one node")
    parser.add_argument("--sleep-ms", type=float, default=0.0, help="the handler sleeps this")
    parser.add_argument(
        "--factor", type=float, default=FACTOR, help="offered / sustainable (target 6: 4)"
    )
    args = parser.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    with tempfile.TemporaryDirectory(prefix="donjon-overload-") as tmp:
        os.chmod(tmp, 0o755)
        node = start_node(Path(tmp) / "node", extra)
        try:
            bundle = sandboxes.write_bundle(Path(tmp) / "fn", "bench-warm", "warm")
            if args.sleep_ms > 0:
                (bundle / "main.py").rename(bundle / "bench_handler.py")
                (bundle / "main.py").write_text(SLEEPING.format(seconds=args.sleep_ms / 1000))
            node.deploy(bundle)
            key = node.create_key("bench", "invoker", ["bench-warm"], UNTHROTTLED)["key"]
            headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
            rounds = [
                run(
                    node.url,
                    "bench-warm",
                    headers,
                    node.cert,
                    node.proc.pid,
                    node.admin_key,
                    3.0 if args.quick else 5.0,
                    pin=args.pin,
                    factor=args.factor,
                )
                for _ in range(max(1, args.rounds))
            ]
            for out in rounds:  # the client's own p99 at each round's offered rate
                out["client_floor"] = client_floor(
                    out["offered_rps"],
                    3.0 if args.quick else 5.0,
                    Path(tmp),
                    node.cert,
                    str(node.data_dir / "tls" / "key.pem"),
                    pin=args.pin,
                )
        finally:
            node.stop()
            import shutil

            shutil.rmtree(sandboxes.node_staging(node.data_dir), ignore_errors=True)
    import dataclasses
    import json

    import report_load

    for out in rounds:  # the bench's own rows and verdicts (report_load.py), one table a round
        for row in report_load._overload_rows(out):
            print("| " + " | ".join(dataclasses.astuple(row)) + " |")
        print()
    print(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
