"""Where the audit writer process's time goes, per record, beside sqlite3 alone (target 4).

One round: sqlite3 alone inserting the same rows in 1000-row commits (audit_phase's
floor, the target's baseline), then `record()` from W concurrent waiters through the
writer process (the path the gateway uses), and for that run, per record:

- the CPU of the loop's process and of the writer process, each split in user and
  system time, and the writer's split by thread (/proc/PID/task/TID/stat: the main
  thread reads and prepares, the others commit or checkpoint);
- the writer's context switches (voluntary: it slept; involuntary: it was preempted);
- with `--stages`, the share of the run the writer's commit thread spent in each
  of its stages and the transactions' sizes (bench/stages/, audit_stages.py);
- with `--trace strace`, the writer's system calls counted, and its fsyncs by file
  (the WAL, the database) with their seconds (slows it: read the counts, not that
  round's rate); with `--trace perf`, perf's samples of the writer by library and
  symbol.

    python bench/audit_split.py [--records 20480] [--waiters 512] [--rounds 1]
        [--stages] [--trace strace|perf] [--keep DIR]

Run another tree's Donjon with that tree's interpreter (this script and
audit_phase.py use only what both trees have).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import audit_phase
import audit_stages
import sandboxes  # the bench's loop: uvloop when installed, as the gateway runs

_TCK = os.sysconf("SC_CLK_TCK")
_PERF_REPORT = ("perf", "report", "--no-children", "--stdio", "-g", "none", "--percent-limit")


def _stat(path: str) -> tuple[float, float]:
    """(user, system) CPU seconds from a /proc stat file."""
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TCK, int(fields[12]) / _TCK


def _switches(path: str) -> tuple[int, int]:
    text = Path(path).read_text()
    vol = re.search(r"^voluntary_ctxt_switches:\s*(\d+)", text, re.MULTILINE)
    inv = re.search(r"^nonvoluntary_ctxt_switches:\s*(\d+)", text, re.MULTILINE)
    return (int(vol.group(1)) if vol else 0, int(inv.group(1)) if inv else 0)


def _sample(pid: int) -> dict[str, Any]:
    """The CPU of process `pid` and of each of its threads, and its context switches."""
    tasks: dict[int, tuple[float, float]] = {}
    switches = [0, 0]
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            tasks[int(tid)] = _stat(f"/proc/{pid}/task/{tid}/stat")
            v, i = _switches(f"/proc/{pid}/task/{tid}/status")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        switches[0] += v
        switches[1] += i
    return {"proc": _stat(f"/proc/{pid}/stat"), "tasks": tasks, "switches": switches}


def _strace(pid: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """One tracer (a process takes only one): every call with its file and duration."""
    trace = subprocess.Popen(
        ["strace", "-f", "-y", "-T", "-tt", "-o", str(out / "trace.txt"), "-p", str(pid)],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    return [trace]


def _perf(pid: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """perf's samples of the writer, user and kernel, with call graphs."""
    rec = subprocess.Popen(
        ["perf", "record", "-q", "-F", "4000", "-g", "-o", str(out / "perf.data"), "-p", str(pid)],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return [rec]


def _count_trace(text: str) -> dict[str, Any]:
    """System calls by name, and fsyncs by file with their seconds, from strace's log."""
    calls: dict[str, int] = {}
    syncs = {"wal": [0, 0.0], "db": [0, 0.0], "other": [0, 0.0]}
    started: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"(\d+)\s+[\d:.]+\s+(\w+)\((.*)", line)
        resumed = re.match(r"(\d+)\s+[\d:.]+\s+<\.\.\. (\w+) resumed>(.*)", line)
        if m is not None:
            tid, name, rest = m.groups()
            calls[name] = calls.get(name, 0) + 1
            if "<unfinished ...>" in rest:
                started[tid] = rest
                continue
        elif resumed is not None:
            tid, name, tail = resumed.groups()
            rest = started.pop(tid, "") + tail
        else:
            continue
        if name in ("fsync", "fdatasync"):
            where = "wal" if "-wal>" in rest else "db" if ".db>" in rest else "other"
            took = re.search(r"<([\d.]+)>\s*$", rest)
            syncs[where][0] += 1
            syncs[where][1] += float(took.group(1)) if took else 0.0
    return {"calls": calls, "syncs": syncs}


async def _run(log: Any, waiters: int, total: int, trace: Path | None, tool: str) -> dict[str, Any]:
    per = total // waiters

    async def waiter() -> None:
        for _ in range(per):
            await log.record(audit_phase.EVENT)

    log.start(process=True)
    writer = log._remote.pid
    tracers = [] if trace is None else (_strace if tool == "strace" else _perf)(writer, trace)
    try:
        here0, there0 = _sample(os.getpid()), _sample(writer)
        t0 = time.perf_counter()
        await asyncio.gather(*(waiter() for _ in range(waiters)))
        wall = time.perf_counter() - t0
        here1, there1 = _sample(os.getpid()), _sample(writer)
    finally:
        log.stop()
        for t in tracers:
            if tool == "perf":
                t.send_signal(2)
            t.wait(timeout=60)
    n = per * waiters
    us = 1e6 / n

    def split(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        (u0, s0), (u1, s1) = a["proc"], b["proc"]
        threads = {
            tid: (
                (u - a["tasks"].get(tid, (0, 0))[0]) * us,
                (s - a["tasks"].get(tid, (0, 0))[1]) * us,
            )
            for tid, (u, s) in b["tasks"].items()
        }
        return {
            "user_us": (u1 - u0) * us,
            "sys_us": (s1 - s0) * us,
            "threads": threads,
            "vol_per_1k": (b["switches"][0] - a["switches"][0]) * 1000 / n,
            "invol_per_1k": (b["switches"][1] - a["switches"][1]) * 1000 / n,
        }

    return {
        "rps": n / wall,
        "loop": split(here0, here1),
        "writer": split(there0, there1),
        "pid": writer,
    }


def _stages_on(out: Path) -> None:
    """Writers started from now on record their stages in `out` (bench/stages/)."""
    hooks = str(HERE / "stages")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = hooks if not path else f"{hooks}{os.pathsep}{path}"
    os.environ["DONJON_BENCH_STAGES"] = str(out)


def one_round(
    records: int, waiters: int, tool: str | None, keep: Path | None, stages: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="donjon-audit-split-") as tmp:
        work = Path(tmp) if keep is None else keep
        work.mkdir(parents=True, exist_ok=True)
        if stages:
            _stages_on(work / "stages.jsonl")
        engine, log, _ = audit_phase._open(work / "audit.db")
        size = len(log._encode(1, time.time(), audit_phase.EVENT))
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        floor = audit_phase._floor_rows(work / "floor.db", 1000, 20, b"x" * size)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        tdir = None if tool is None else work
        out = sandboxes.run_loop(lambda: _run(log, waiters, records, tdir, tool or ""))
        out["floor_rps"] = floor
        if stages:
            out["stages"] = audit_stages.summarise(work / "stages.jsonl")
        out["floor_user_us"] = (r1.ru_utime - r0.ru_utime) * 1e6 / 20_000
        out["floor_sys_us"] = (r1.ru_stime - r0.ru_stime) * 1e6 / 20_000
        if tool == "strace":
            out["trace"] = _count_trace((work / "trace.txt").read_text())
        elif tool == "perf":
            out["perf"] = ""
            for sort, limit in (("dso", "0.5"), ("dso,sym", "0.8")):
                report = subprocess.run(
                    [*_PERF_REPORT, limit, "-i", str(work / "perf.data"), "--sort", sort],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                out["perf"] += report.stdout
        engine.dispose()
        return out


def _show(r: dict[str, Any], records: int) -> None:
    la = os.getloadavg()
    print(
        f"{time.strftime('%H:%M:%S', time.gmtime())} UTC load {la[0]:.2f}"
        f" | record() {r['rps']:,.0f}/s, sqlite3 alone {r['floor_rps']:,.0f}/s"
        f" = {r['rps'] / r['floor_rps']:.2f}x"
    )
    print(f"  sqlite3 alone: user {r['floor_user_us']:.2f} + sys {r['floor_sys_us']:.2f} µs/row")
    for side in ("loop", "writer"):
        s = r[side]
        print(
            f"  {side}: user {s['user_us']:.2f} + sys {s['sys_us']:.2f} µs/record;"
            f" switches per 1k records: {s['vol_per_1k']:.1f} voluntary,"
            f" {s['invol_per_1k']:.1f} involuntary"
        )
        if side == "writer":
            names = iter(("commit", "WAL checkpoints (after)"))
            for tid, (u, sy) in sorted(s["threads"].items()):
                name = "main (read, prepare)" if tid == r["pid"] else next(names, f"thread {tid}")
                print(f"    {name}: user {u:.2f} + sys {sy:.2f} µs/record")
    for stage in r.get("stages", []):
        print(audit_stages.show(stage))
    if "trace" in r:
        t = r["trace"]
        print(f"  fsyncs: {t['syncs']} ({records} records)")
        calls = sorted(t["calls"].items(), key=lambda kv: -kv[1])
        print("  calls: " + ", ".join(f"{k} {v}" for k, v in calls))
    if "perf" in r:
        print(r["perf"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_480)
    parser.add_argument("--waiters", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trace", choices=("strace", "perf"), default=None)
    parser.add_argument("--keep", type=Path, default=None, help="a directory for the files")
    parser.add_argument("--stages", action="store_true", help="time the writer's stages")
    args = parser.parse_args()
    for _ in range(args.rounds):
        _show(
            one_round(args.records, args.waiters, args.trace, args.keep, args.stages), args.records
        )


if __name__ == "__main__":
    main()
