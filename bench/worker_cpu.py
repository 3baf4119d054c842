"""A warm worker's CPU and wake-ups per call, through the sandbox pool alone.

    .venv/bin/python bench/worker_cpu.py [--calls 5000] [--callers 1]

Drives `SandboxPool.invoke` directly (no gateway, TLS or audit; bench/sandboxes.py
builds the pool as the node does) on the bench's warm function with `--callers`
concurrent callers, each warm instance taking one call at a time (concurrency =
callers, so that many warm workers). After a warm-up it makes `--calls` calls
and prints per call: the workers' CPU (/proc/PID/schedstat, ns on the CPU,
summed over the workers), their voluntary and involuntary context switches,
the calling process's own CPU (the pool's side: asyncio, the channel) and the
wall time. Fewer parts than bench/warm_split.py, so less noise: the worker's
own figures, before and after a runtime change. docs/performance.md, "The warm
worker: one wake-up per call".
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import sandboxes
import warm_split

from donjon.sandbox import SandboxHost


def _switches(status: str, kind: str) -> int:
    m = re.search(rf"^{kind}_ctxt_switches:\s+(\d+)", status, re.M)
    return int(m[1]) if m else 0


def _worker_counters(pids: list[int]) -> tuple[int, int, int]:
    """Summed over `pids`: ns on the CPU, voluntary and involuntary switches."""
    ns = vol = invol = 0
    for pid in pids:
        ns += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        status = Path(f"/proc/{pid}/status").read_text()
        vol += _switches(status, "voluntary")
        invol += _switches(status, "nonvoluntary")
    return ns, vol, invol


async def _measure(bundle: Path, host: SandboxHost, calls: int, callers: int) -> dict[str, float]:
    pool = sandboxes.make_pool(host)
    cfg = dataclasses.replace(sandboxes.config(bundle, "cpu-w", True), concurrency=callers)
    meta, event = sandboxes._meta("cpu-w"), b'{"name": "bench"}'

    async def caller(n: int) -> None:
        for _ in range(n):
            await pool.invoke(cfg, meta, event, 5)

    try:
        await asyncio.gather(*(caller(max(50, calls // 10 // callers)) for _ in range(callers)))
        workers = [
            p for p, role in warm_split.roles(os.getpid()).items() if role == "sandbox: worker"
        ]
        before, cpu0, t0 = _worker_counters(workers), time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(calls // callers) for _ in range(callers)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        after = _worker_counters(workers)
    finally:
        await pool.close()
    n = callers * (calls // callers)
    return {
        "workers": len(workers),
        "worker_us": (after[0] - before[0]) / n / 1000,
        "voluntary": (after[1] - before[1]) / n,
        "involuntary": (after[2] - before[2]) / n,
        "caller_us": cpu / n * 1e6,
        "wall_us": wall / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--callers", type=int, default=1)
    args = parser.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    tmp = Path(tempfile.mkdtemp(prefix="workercpu-"))
    tmp.chmod(0o755)  # bundles under it must be readable by the sandbox user
    host = sandboxes.make_host(tmp / "data")
    try:
        bundle = sandboxes.write_bundle(tmp, "cpu-w", "warm")
        r = sandboxes.run_loop(lambda: _measure(bundle, host, args.calls, args.callers))
    finally:
        sandboxes.forget_host(host)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{args.callers} caller(s), {r['workers']:.0f} warm worker(s), per call: "
        f"worker CPU {r['worker_us']:.1f} µs, switches {r['voluntary']:.2f} voluntary / "
        f"{r['involuntary']:.2f} involuntary; caller CPU {r['caller_us']:.1f} µs; "
        f"wall {r['wall_us']:.1f} µs"
    )


if __name__ == "__main__":
    main()
