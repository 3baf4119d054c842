"""Where an invocation call's CPU goes, whole: the supervisor, the workers, the caller, the kernel.

    .venv/bin/python bench/invocation_split.py [--calls 300] [--callers 1] [--perf FILE]

Drives `SandboxPool.invoke` directly (no gateway, TLS or audit; bench/sandboxes.py
builds the pool as the node does) on the bench handler with `isolation: invocation`.
After a warm-up it makes `--calls` calls with `--callers` concurrent callers and
prints per call, over exactly that window:

- the supervisor's own CPU, user and system (/proc/<pid>/stat), and its context
  switches (/proc/<pid>/status);
- the workers' CPU, user and system: the supervisor's reaped children
  (cutime/cstime) plus the change in the workers still alive, and their minor
  page faults (cminflt, likewise), and how many workers were made (/proc/stat's
  `processes`, fork and clone count, less the bench's own threads);
- bubblewrap's processes of the sandbox (its pid 1 and the outer one);
- the calling process (the pool's side, the gateway's part: asyncio, the
  channel, the exit report), time.process_time();
- kernel threads (every child of kthreadd: kworkers, RCU, ksoftirqd), summed
  from their /proc/<pid>/stat: the kernel's share no process of the call is
  charged for (namespace teardown, deferred frees);
- the machine's whole busy CPU over the window (/proc/stat: all but idle and
  iowait), its context switches, and what is left once the parts above are
  taken out (other processes, interrupts not charged to a task, rounding).

CPU from /proc is counted in clock ticks (10 ms): over 300 calls that is 0.03 ms
a call. With `--perf FILE`, `perf record -e cpu-clock -a -g` runs over the same
window (kernel symbols as root); bench/perf_split.py then sorts its samples into
clone, exit, page faults and system calls per process. With `--strace FILE`,
`strace -f -c` counts the system calls of the supervisor and its workers (slow:
its times are not the calls'). The bundle is byte-compiled as a deploy builds it
(bundle/build.py; `--no-pyc`: as bench/sandboxes.py writes it, so that each worker
compiles main.py). With `--warm`, the same calls of the same handler in a warm
sandbox, for the caller's side of an invocation call against a warm one. With
`--floor N`, bench/clone_floor.py's floor (and with a network namespace) over N
cycles inside bwrap, its wall and the machine's whole CPU per cycle: the same
account for the isolation alone.
docs/performance.md, "Where an invocation call's CPU goes, whole".
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import dataclasses
import json
import os
import py_compile
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import sandboxes
import warm_split

from donjon.sandbox import SandboxHost

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[int]:
    """/proc/<pid>/stat's fields after the command (index 0 is the state's field 3)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []
    return [int(x) if x.lstrip("-").isdigit() else 0 for x in fields]


# indices into _stat's list (man 5 proc, field number - 3)
_PPID, _MINFLT, _CMINFLT, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 7, 8, 11, 12, 13, 14


def _switches(pid: int) -> tuple[int, int]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    vol = invol = 0
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            invol = int(line.split()[1])
    return vol, invol


def _kthreads() -> dict[int, tuple[str, int]]:
    """Every kernel thread (kthreadd and its children): name, utime + stime ticks."""
    out: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        if pid == 2 or fields[1] == "2":
            out[pid] = (name, int(fields[11]) + int(fields[12]))
    return out


def _machine() -> dict[str, int]:
    """/proc/stat: busy and idle ticks over all cores, context switches, processes made."""
    out: dict[str, int] = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] == "cpu":
                v = [int(x) for x in parts[1:]]
                out["busy"] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                out["user"], out["system"] = v[0] + v[1], v[2]
                out["irq"] = v[5] + v[6]
                out["idle"] = v[3] + v[4]
            elif parts[0] == "ctxt":
                out["ctxt"] = int(parts[1])
            elif parts[0] == "processes":
                out["processes"] = int(parts[1])
    return out


@dataclasses.dataclass
class Snapshot:
    t: float
    caller: float
    sup: list[int]
    sup_switches: tuple[int, int]
    workers: dict[int, list[int]]
    bwrap: int
    kthreads: dict[int, tuple[str, int]]
    machine: dict[str, int]


def _snapshot(sup: int, bwraps: list[int]) -> Snapshot:
    workers = {c: s for c in sandboxes.children(sup) if (s := _stat(c)) and s[_PPID] == sup}
    bw = 0
    for b in bwraps:
        s = _stat(b)
        if s:
            bw += s[_UTIME] + s[_STIME]
    return Snapshot(
        t=time.perf_counter(),
        caller=time.process_time(),
        sup=_stat(sup),
        sup_switches=_switches(sup),
        workers=workers,
        bwrap=bw,
        kthreads=_kthreads(),
        machine=_machine(),
    )


def _diff(a: Snapshot, b: Snapshot, n: int) -> dict[str, float]:
    """Per call, ms (CPU) or counts, between snapshots `a` and `b`."""
    ms = 1000.0 / _TICK / n

    def live(snap: Snapshot, i: int, j: int | None = None) -> int:
        return sum(s[i] + (s[j] if j is not None else 0) for s in snap.workers.values())

    # Workers alive at `a` and reaped by `b` move from `live` into the supervisor's c* fields.
    w_user = (b.sup[_CUTIME] - a.sup[_CUTIME]) + live(b, _UTIME) - live(a, _UTIME)
    w_sys = (b.sup[_CSTIME] - a.sup[_CSTIME]) + live(b, _STIME) - live(a, _STIME)
    w_flt = (b.sup[_CMINFLT] - a.sup[_CMINFLT]) + live(b, _MINFLT) - live(a, _MINFLT)
    kt = 0
    per_kt: dict[str, int] = {}
    for pid, (name, ticks) in b.kthreads.items():
        d = ticks - a.kthreads.get(pid, (name, 0))[1]
        kt += d
        kind = name.split("/")[0].split("-")[0]
        per_kt[kind] = per_kt.get(kind, 0) + d
    m = {k: b.machine[k] - a.machine[k] for k in b.machine}
    out = {
        "wall": (b.t - a.t) * 1000 / n,
        "sup_user": (b.sup[_UTIME] - a.sup[_UTIME]) * ms,
        "sup_sys": (b.sup[_STIME] - a.sup[_STIME]) * ms,
        "sup_minflt": (b.sup[_MINFLT] - a.sup[_MINFLT]) / n,
        "sup_vol": (b.sup_switches[0] - a.sup_switches[0]) / n,
        "sup_invol": (b.sup_switches[1] - a.sup_switches[1]) / n,
        "w_user": w_user * ms,
        "w_sys": w_sys * ms,
        "w_minflt": w_flt / n,
        "bwrap": (b.bwrap - a.bwrap) * ms,
        "caller": (b.caller - a.caller) * 1000 / n,
        "kthreads": kt * ms,
        "machine": m["busy"] * ms,
        "machine_user": m["user"] * ms,
        "machine_sys": m["system"] * ms,
        "machine_irq": m["irq"] * ms,
        "ctxt": m["ctxt"] / n,
        "processes": m["processes"] / n,
    }
    for kind, d in sorted(per_kt.items(), key=lambda kv: -kv[1])[:5]:
        out[f"kt:{kind}"] = d * ms
    return out


_FLOOR = """\
import ctypes, json, os, signal, sys, time
sys.path.insert(0, '')
import main
n, flags = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.PyDLL(None, use_errno=True)
nr = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
def cycle():
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(flags | signal.SIGCHLD),
                       None, None, None, ctypes.c_ulong(0))
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
for _ in range(50):
    cycle()
with open("/proc/stat") as f:
    a = f.readline().split()
t0 = os.times()
t = time.perf_counter()
for _ in range(n):
    cycle()
wall = time.perf_counter() - t
with open("/proc/stat") as f:
    b = f.readline().split()
busy = sum(int(b[i]) - int(a[i]) for i in (1, 2, 3, 6, 7, 8))
t1 = os.times()
own = sum(t1[i] - t0[i] for i in range(4))  # user, system, children's user and system
print(json.dumps({"wall": wall / n, "busy_ticks": busy, "n": n, "own": own / n}))
"""
#: bench/clone_floor.py's floor: clone(PID | NS | IPC), and the same with a network namespace
_NS = 0x20000000 | 0x00020000 | 0x08000000
_NET = 0x40000000


def floor_cpu(host: SandboxHost, bundle: Path, n: int) -> dict[str, dict[str, float]]:
    """The clone floor's wall and whole-machine CPU per cycle (ms), inside bwrap with
    Donjon's profile: what the isolation alone costs the machine, kernel work included."""
    (bundle / "floor_cpu.py").write_text(_FLOOR)
    out: dict[str, dict[str, float]] = {}
    try:
        for label, flags in (("clone floor (PID, NS, IPC)", _NS), ("+ NET", _NS | _NET)):
            done = subprocess.run(
                sandboxes._in_bwrap(host, bundle, ["/fn/floor_cpu.py", str(n), str(flags)]),
                cwd=bundle,
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            r = json.loads(done.stdout)
            out[label] = {
                "wall": r["wall"] * 1000,
                "cpu": r["busy_ticks"] * 1000.0 / _TICK / r["n"],
                "own": r["own"] * 1000,
            }
    finally:
        (bundle / "floor_cpu.py").unlink()
    return out


async def _measure(
    bundle: Path,
    host: SandboxHost,
    calls: int,
    callers: int,
    warm: bool,
    perf: str | None,
    strace: str | None = None,
) -> dict[str, float]:
    pool = sandboxes.make_pool(host)
    name = "split-w" if warm else "split-i"
    cfg = dataclasses.replace(sandboxes.config(bundle, name, warm), concurrency=8)
    meta, event = sandboxes._meta(name), b'{"name": "bench"}'

    async def caller(k: int) -> None:
        for _ in range(k):
            await pool.invoke(cfg, meta, event, 5)

    recorder: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.gather(*(caller(max(30, calls // 10 // callers)) for _ in range(callers)))
        await asyncio.sleep(0.3)  # the spares of the warm-up made
        roles = warm_split.roles(os.getpid())
        sups = [p for p, r in roles.items() if r == "sandbox: supervisor"]
        if len(sups) != 1:
            raise SystemExit(f"expected one supervisor, found {roles}")
        sup = sups[0]
        bwraps = [p for p, r in roles.items() if r == "sandbox: bwrap"]
        if perf:
            recorder = subprocess.Popen(
                ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-a", "-g", "-o", perf],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)  # perf's own start is not the calls'
        if strace:
            recorder = subprocess.Popen(
                ["strace", "-f", "-c", "-S", "calls", "-o", strace, "-p", str(sup)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)  # attached
        a = _snapshot(sup, bwraps)
        await asyncio.gather(*(caller(calls // callers) for _ in range(callers)))
        b = _snapshot(sup, bwraps)
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait()
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
        await pool.close()
    n = callers * (calls // callers)
    if perf:  # for bench/perf_split.py --supervisor ... --bench ...
        print(f"supervisor pid {sup}, bench pid {os.getpid()}, {n} calls")
    return _diff(a, b, n)


def _table(r: dict[str, float], warm: bool) -> None:
    parts = [
        ("supervisor, user", r["sup_user"]),
        ("supervisor, system", r["sup_sys"]),
        ("workers, user", r["w_user"]),
        ("workers, system", r["w_sys"]),
        ("bubblewrap's processes", r["bwrap"]),
        ("caller (the pool, in this process)", r["caller"]),
        ("kernel threads (kworkers, RCU, softirq)", r["kthreads"]),
    ]
    known = sum(v for _, v in parts)
    print(f"{'per call':<44} {'ms CPU':>8}")
    for label, v in parts:
        print(f"{label:<44} {v:>8.3f}")
    print(f"{'sum of the parts':<44} {known:>8.3f}")
    print(f"{'machine, busy (all cores, /proc/stat)':<44} {r['machine']:>8.3f}")
    print(
        f"{'  of it user / system / irq+softirq':<44} "
        f"{r['machine_user']:.3f} / {r['machine_sys']:.3f} / {r['machine_irq']:.3f}"
    )
    print(f"{'machine less the parts (others, irq, ticks)':<44} {r['machine'] - known:>8.3f}")
    print(f"wall per call {r['wall']:.3f} ms")
    kts = ", ".join(f"{k[3:]} {v:.3f}" for k, v in r.items() if k.startswith("kt:"))
    print(f"kernel threads by kind, ms per call: {kts}")
    print(
        f"supervisor: {r['sup_minflt']:.1f} minor faults, switches {r['sup_vol']:.2f} voluntary /"
        f" {r['sup_invol']:.2f} involuntary per call"
    )
    if not warm:
        print(f"workers: {r['w_minflt']:.1f} minor faults per call")
    print(
        f"machine: {r['ctxt']:.1f} context switches, {r['processes']:.2f} processes made per call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--warm", action="store_true", help="a warm sandbox instead")
    parser.add_argument("--perf", help="perf record -a -g over the window into this file")
    parser.add_argument(
        "--floor",
        type=int,
        default=0,
        help="also the clone floor's wall and machine CPU per cycle over this many cycles",
    )
    parser.add_argument(
        "--strace", help="strace -f -c the supervisor and its workers into this file (slow)"
    )
    parser.add_argument(
        "--no-pyc", action="store_true", help="leave the bundle uncompiled (bench/sandboxes.py's)"
    )
    args = parser.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    tmp = Path(tempfile.mkdtemp(prefix="invsplit-"))
    tmp.chmod(0o755)  # bundles under it must be readable by the sandbox user
    host = sandboxes.make_host(tmp / "data")
    try:
        iso = "warm" if args.warm else "invocation"
        bundle = sandboxes.write_bundle(tmp, "split", iso)
        if not args.no_pyc:  # as `donjon deploy` builds a bundle (bundle/build.py)
            compileall.compile_dir(
                bundle,
                ddir="/fn",
                quiet=2,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
            for made in bundle.rglob("*"):
                made.chmod(0o755 if made.is_dir() else 0o644)
        r = sandboxes.run_loop(
            lambda: _measure(
                bundle, host, args.calls, args.callers, args.warm, args.perf, args.strace
            )
        )
        floors = floor_cpu(host, bundle, args.floor) if args.floor else {}
    finally:
        sandboxes.forget_host(host)
        shutil.rmtree(tmp, ignore_errors=True)
    for label, f in floors.items():
        print(
            f"{label}: {f['wall']:.3f} ms wall, {f['own']:.3f} ms CPU of its processes,"
            f" {f['cpu']:.3f} ms machine CPU per cycle"
        )
    compiled = "no pyc" if args.no_pyc else "bundle byte-compiled"
    print(f"{iso}, {args.calls} calls, {args.callers} caller(s), {compiled}")
    _table(r, args.warm)


if __name__ == "__main__":
    main()
