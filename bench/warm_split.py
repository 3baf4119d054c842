"""Where the whole tree's CPU goes per warm request, process by process (issue 14, target 1).

    .venv/bin/python bench/warm_split.py [--seconds 5] [--rounds 2] [--floor] [--no-perf]

Starts a real node (tests/harness.py: `donjon serve`, every control on), deploys
the bench's warm function (bench/sandboxes.py), makes a keyed invoker, warms it
up and loads it with 32 connections (wrk when installed, bench/loadgen.py), the
plan bench_invoke.py uses. Around each measured window it reads, for every
process and thread of the node's tree, utime + stime and the voluntary and
involuntary context switches from /proc, and prints per request, by role:
the gateway (its event loop thread apart from its other threads), the audit
writer (its reading and preparing thread apart from its commit thread), the
sandboxes (bwrap, supervisor, worker), the rest; and the load client's own CPU
(wrk, a child of this script: os.times).

Then the counts that explain them: audit chunks (COMMITTED answers) per second
and records per chunk from the node's /metrics, and, in a second window of the
same load under `perf stat` (syscall tracepoints, counted in the kernel), the
system calls per request of each role and the audit writer's fsync/fdatasync
per request: one per transaction, so records per transaction.

`--floor [VARIANT]` measures bench/floor_server.py (the same architecture from bare
parts, no control; bench/warm_floor.py) the same way, roles server / worker /
writer, for the counterpart of each row.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import loadgen
import sandboxes

BODY = b'{"name": "bench"}'
UNTHROTTLED = {"rate": "1000000/second", "burst": 1000000, "concurrency": 100000}
_TICK = os.sysconf("SC_CLK_TCK")
PERF_EVENTS = (
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_fsync",
    "syscalls:sys_enter_fdatasync",
)


@dataclass(frozen=True)
class Task:
    role: str
    ticks: int  # utime + stime
    user: int
    voluntary: int
    involuntary: int


def _cmd(pid: int) -> str:
    return sandboxes.cmdline(pid)


def roles(root: int) -> dict[int, str]:
    """Each process of the tree under `root` and its role."""
    out: dict[int, str] = {}
    parent: dict[int, int] = {}
    for pid in sandboxes.tree(root):
        for child in sandboxes.children(pid):
            parent[child] = pid
    for pid in sandboxes.tree(root):
        cmd = _cmd(pid)
        up = out.get(parent.get(pid, -1), "")
        if pid == root:
            out[pid] = "gateway"
        elif "donjon.audit.writer" in cmd:
            out[pid] = "audit writer"
        elif "floor_server.py writer" in cmd:
            out[pid] = "audit writer (floor: one thread)"
        elif "floor_server.py worker" in cmd:
            out[pid] = "sandbox: worker"
        elif "donjon.scan.worker" in cmd:
            out[pid] = "scan worker (idle)"
        elif cmd.startswith(("bwrap", "setpriv")):
            out[pid] = "sandbox: bwrap"
        elif up == "sandbox: bwrap":
            out[pid] = "sandbox: supervisor"
        elif up in ("sandbox: supervisor", "sandbox: worker"):
            out[pid] = "sandbox: worker"
        else:
            out[pid] = "other: " + (cmd.split(" ")[0].rsplit("/", 1)[-1] or "?")
    return out


def _thread_role(role: str, pid: int, tid: int) -> str:
    if role == "gateway":
        return "gateway: event loop thread" if tid == pid else "gateway: other threads"
    if role == "audit writer":
        return "audit writer: read + prepare" if tid == pid else "audit writer: commit thread"
    return role


def _field(status: str, kind: str) -> int:
    """A context switch count of /proc/.../status (`kind`: voluntary or nonvoluntary)."""
    m = re.search(rf"^{kind}_ctxt_switches:\s+(\d+)", status, re.M)
    return int(m[1]) if m else 0


def snapshot(root: int) -> dict[int, Task]:
    """Every thread of the tree: its role, CPU ticks and context switches so far."""
    out: dict[int, Task] = {}
    for pid, role in roles(root).items():
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            vol, inv = _field(status, "voluntary"), _field(status, "nonvoluntary")
            user, system = int(stat[11]), int(stat[12])
            out[tid] = Task(_thread_role(role, pid, tid), user + system, user, vol, inv)
    return out


def split(before: dict[int, Task], after: dict[int, Task]) -> dict[str, dict[str, float]]:
    """Per role: CPU seconds (and user part), context switches and threads, over the window."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for tid, a in after.items():
        b = before.get(tid, Task(a.role, 0, 0, 0, 0))
        r = out[a.role]
        r["cpu_s"] += (a.ticks - b.ticks) / _TICK
        r["user_s"] += (a.user - b.user) / _TICK
        r["voluntary"] += a.voluntary - b.voluntary
        r["involuntary"] += a.involuntary - b.involuntary
        r["threads"] += 1
    gone = [t for t in before if t not in after]
    if gone:
        out["(threads gone in the window: not counted)"]["threads"] = len(gone)
    return out


def _metrics(node: Any) -> dict[str, float]:
    """The audit writer's counters from the node's /metrics (admin key)."""
    if node is None:
        return {}
    with node.client() as c:
        text = c.get("/metrics").text
    out = {}
    for name in (
        "donjon_audit_batch_records_count",
        "donjon_audit_batch_records_sum",
        "donjon_audit_append_seconds_sum",
    ):
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        out[name] = float(m[1]) if m else float("nan")
    return out


def window(req: loadgen.Request, root: int, node: Any, seconds: float) -> dict[str, Any]:
    """One measured load window: requests, the per-role split, the client's CPU, the
    audit counters."""
    m0, s0, c0 = _metrics(node), snapshot(root), os.times()
    res = loadgen.run(req, 32, seconds)
    c1, s1, m1 = os.times(), snapshot(root), _metrics(node)
    res["split"] = split(s0, s1)
    res["client_s"] = c1.children_user + c1.children_system - c0.children_user - c0.children_system
    res["audit"] = {k: m1[k] - m0[k] for k in m0}
    return res


def perf_window(req: loadgen.Request, root: int, seconds: float) -> dict[str, Any]:
    """The same load under `perf stat` per thread: system calls of each role."""
    who = roles(root)
    tid_role = {
        int(t): _thread_role(role, pid, int(t))
        for pid, role in who.items()
        if Path(f"/proc/{pid}/task").exists()
        for t in os.listdir(f"/proc/{pid}/task")
    }
    out_file = Path(tempfile.mkstemp(prefix="perf-", suffix=".csv")[1])
    perf = subprocess.Popen(
        ["perf", "stat", "-x", ",", "--per-thread", "-o", str(out_file)]
        + [a for e in PERF_EVENTS for a in ("-e", e)]
        + ["-p", ",".join(str(p) for p in who)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    res = loadgen.run(req, 32, seconds)
    perf.send_signal(2)
    perf.wait(30)
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in out_file.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 4 or not parts[1].strip().isdigit():
            continue
        tid = int(parts[0].rsplit("-", 1)[-1])
        event = parts[3].split(":")[-1]
        counts[tid_role.get(tid, "other")][event] += int(parts[1])
    out_file.unlink()
    res["syscalls"] = counts
    return res


def report(name: str, runs: list[dict[str, Any]], perf: dict[str, Any] | None) -> None:
    print(f"\n{name}: 32 connections, CPU per request by role (ms), each window")
    order: list[str] = sorted({r for w in runs for r in w["split"]})
    print(
        f"  {'role (threads)':38} "
        + " ".join(f"{'window ' + str(i + 1):>24}" for i in range(len(runs)))
    )
    print(f"  {'':38} " + " ".join(f"{'CPU (user) ms  cs v/i':>24}" for _ in runs))
    for role in [*order, "whole tree", "load client (wrk)"]:
        cells = []
        for w in runs:
            n = max(1, w["requests"])
            if role == "whole tree":
                cpu = sum(s["cpu_s"] for s in w["split"].values())
                cells.append(f"{cpu * 1000 / n:>8.3f}{'':16}")
                continue
            if role == "load client (wrk)":
                cells.append(f"{w['client_s'] * 1000 / n:>8.3f}{'':16}")
                continue
            s = w["split"].get(role, {})
            cells.append(
                f"{s.get('cpu_s', 0) * 1000 / n:>8.3f} ({s.get('user_s', 0) * 1000 / n:5.3f})"
                f" {s.get('voluntary', 0) / n:4.2f}/{s.get('involuntary', 0) / n:4.2f}"
            )
        threads = max((int(w["split"].get(role, {}).get("threads", 0)) for w in runs), default=0)
        label = f"{role} ({threads})" if threads else role
        print(f"  {label:38} " + " ".join(f"{c:>24}" for c in cells))
    rps = " ".join(f"{w['rps']:.0f}" for w in runs)
    print(f"  req/s: {rps}  (cs v/i: voluntary / involuntary context switches per request)")
    for w in runs:
        a = w["audit"]
        chunks = a.get("donjon_audit_batch_records_count", 0)
        if chunks:
            print(
                f"  audit: {chunks / w['seconds']:.0f} chunks/s, "
                f"{a['donjon_audit_batch_records_sum'] / chunks:.1f} records per chunk, "
                f"{a['donjon_audit_append_seconds_sum'] * 1000 / chunks:.2f} ms of write + "
                f"commit per chunk (its transaction's)"
            )
    if perf is None:
        return
    n = max(1, perf["requests"])
    print(f"  under perf stat ({perf['rps']:.0f} req/s): system calls per request by role")
    for role, c in sorted(perf["syscalls"].items()):
        syncs = c.get("sys_enter_fsync", 0) + c.get("sys_enter_fdatasync", 0)
        extra = (
            f", fsync+fdatasync {syncs / n:.4f} ({n / syncs:.1f} requests each)" if syncs else ""
        )
        print(f"    {role:36} {c.get('sys_enter', 0) / n:7.2f}{extra}")


def _node_target(tmp: Path) -> tuple[Any, loadgen.Request, int]:
    from harness import start_node

    node = start_node(tmp / "node")
    try:
        node.deploy(sandboxes.write_bundle(tmp / "fn", "bench-warm", "warm"))
        key = node.create_key("bench", "invoker", ["bench-warm"], UNTHROTTLED)["key"]
    except BaseException:
        node.stop()
        raise
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    url = node.url + "/v1/functions/bench-warm/invoke"
    return node, loadgen.Request(url, BODY, headers, node.cert), node.proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--floor",
        nargs="?",
        const="floor",
        help="measure bench/floor_server.py instead (a variant of bench/warm_floor.py)",
    )
    parser.add_argument("--no-perf", action="store_true", help="skip the perf stat window")
    args = parser.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    tmp = Path(tempfile.mkdtemp(prefix="warmsplit-"))
    tmp.chmod(0o755)  # bundles under it must be readable by the sandbox user
    (tmp / "node").mkdir()
    node: Any = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        if args.floor:
            import warm_floor

            from donjon.gateway.tls import create_self_signed

            cert, key = tmp / "cert.pem", tmp / "key.pem"
            create_self_signed(cert, key)
            proc, port = warm_floor.start(tmp, str(cert), str(key), args.floor)
            url = f"https://127.0.0.1:{port}{warm_floor.PATH}"
            # The controls' variants check this key (a wrong one is a fast 401, not a call).
            headers = {
                "content-type": "application/json",
                "authorization": f"Bearer {warm_floor.CONTROLS_KEY}",
            }
            req = loadgen.Request(url, BODY, headers, str(cert))
            root, name = proc.pid, f"the design floor (bench/floor_server.py, {args.floor})"
        else:
            node, req, root = _node_target(tmp)
            name = "Donjon warm (donjon serve, every control on)"
        loadgen.run(req, 8, 1)
        loadgen.run(req, 32, 1)  # the warm instances it will use are started
        runs = [window(req, root, node, args.seconds) for _ in range(args.rounds)]
        perf = None
        if not args.no_perf and shutil.which("perf"):
            perf = perf_window(req, root, args.seconds)
        report(name, runs, perf)
    finally:
        if node is not None:
            node.stop()
            shutil.rmtree(sandboxes.node_staging(node.data_dir), ignore_errors=True)
        if proc is not None:
            warm_floor.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
