"""The function's queue alone under 4x overload: the sandbox pool, no gateway (issue 14, 6).

    .venv/bin/python bench/standing_pool.py [--sleep-ms 20] [--seconds 3] [--rounds 1]

bench/overload.py measures the whole node, where on this machine the gateway's one
event loop (TLS, parsing, refusing) and the load client sharing two cores set the
accepted calls' latency. This drives `SandboxPool.invoke` directly, as the gateway
does, for a warm function whose handler sleeps `--sleep-ms` at concurrency 8, so
what is measured is the queue for the function's slots (sandbox/backlog.py and
sandbox/standing.py) and the sandbox round trip:

1. unloaded: 200 calls one after the other (p50/p99);
2. sustainable: 32 callers in a closed loop (calls/s; any refusal counted);
3. open loop at 4x that rate: call *i* starts at start + i/rate whatever the pool
   does, and its latency counts from then; each ends served, shed (`CallShed`, 503)
   or refused after the longest wait (`TooManyInvocations`, 429). The served calls'
   p99 is given over the whole run and over the calls due after its first 0.5 s
   (before then a queue fills, and a queue stands only after an interval), with
   the p50/p99 per quarter second (`timeline`).

Prints one line per round and the figures as JSON. Runs with either tree's venv.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import sandboxes

from donjon.sandbox import CallShed, InstanceConfig, SandboxPool, TooManyInvocations

HANDLER = (
    "import time\ndef handler(event, context):\n    time.sleep({seconds!r})\n    return {{}}\n"
)
CONCURRENCY = 8
CLOSED_LOOP = 32
#: Sequential calls for the unloaded p99 (the 2nd longest of 200).
UNLOADED_CALLS = 200
#: The first half second of the overload: a queue fills and stands (an interval).
SETTLING_S = 0.5
FACTOR = 4.0
EVENT = b"{}"


def _p(values: list[float], q: float) -> float:
    """The q-quantile of `values` in ms (0 if none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _closed_loop(pool: SandboxPool, cfg: InstanceConfig, seconds: float) -> dict[str, Any]:
    meta, done, refused = sandboxes._meta(cfg.function), [0], [0]
    end = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < end:
            try:
                await pool.invoke(cfg, meta, EVENT, 30)
                done[0] += 1
            except (CallShed, TooManyInvocations):
                refused[0] += 1

    t0 = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(CLOSED_LOOP)))
    return {"rps": done[0] / (time.monotonic() - t0), "refused": refused[0]}


async def _open_loop(
    pool: SandboxPool, cfg: InstanceConfig, rate: float, seconds: float
) -> dict[str, Any]:
    meta = sandboxes._meta(cfg.function)
    served: list[float] = []
    timeline: dict[int, list[float]] = {}  # served latencies by quarter second of schedule
    shed: list[float] = []
    timed_out: list[float] = []
    late: list[float] = []  # how late each call started against its schedule
    # Only the calls not yet over: gathering thousands of finished tasks at the end
    # stalls the loop for ~100 ms, which the last calls measured as their own wait.
    pending: set[asyncio.Task[None]] = set()

    async def call(due: float) -> None:
        late.append(time.monotonic() - due)
        try:
            await pool.invoke(cfg, meta, EVENT, 30)
            served.append(time.monotonic() - due)
            timeline.setdefault(int((due - start) * 4), []).append(served[-1])
        except CallShed:
            shed.append(time.monotonic() - due)
        except TooManyInvocations:
            timed_out.append(time.monotonic() - due)

    n = int(rate * seconds)
    start = time.monotonic()
    i = 0
    while i < n:
        now = time.monotonic()
        while i < n and start + i / rate <= now:
            task = asyncio.ensure_future(call(start + i / rate))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        await asyncio.sleep(0.001)
    while pending:
        await asyncio.wait(set(pending))
    return {
        "offered": n,
        "served": len(served),
        "shed": len(shed),
        "timed_out": len(timed_out),
        "served_p50_ms": _p(served, 0.5),
        "served_p99_ms": _p(served, 0.99),
        "settled_p99_ms": _p(
            [x for q, v in timeline.items() if q / 4 >= SETTLING_S for x in v], 0.99
        ),
        "shed_p99_ms": _p(shed, 0.99),
        "started_late_p99_ms": _p(late, 0.99),
        "timeline": [
            {"from_s": q / 4, "served": len(v), "p50_ms": _p(v, 0.5), "p99_ms": _p(v, 0.99)}
            for q, v in sorted(timeline.items())
        ],
    }


async def _round(pool: SandboxPool, cfg: InstanceConfig, seconds: float) -> dict[str, Any]:
    meta = sandboxes._meta(cfg.function)
    await asyncio.gather(*(pool.invoke(cfg, meta, EVENT, 30) for _ in range(CONCURRENCY)))
    unloaded: list[float] = []
    for _ in range(UNLOADED_CALLS):
        t0 = time.monotonic()
        await pool.invoke(cfg, meta, EVENT, 30)
        unloaded.append(time.monotonic() - t0)
    sustainable = await _closed_loop(pool, cfg, seconds)
    await asyncio.sleep(1)  # the closed loop's queue gone: the pool at rest
    load = await _open_loop(pool, cfg, FACTOR * sustainable["rps"], seconds)
    out = {
        "unloaded_p50_ms": _p(unloaded, 0.5),
        "unloaded_p99_ms": _p(unloaded, 0.99),
        "sustainable_rps": sustainable["rps"],
        "sustainable_refused": sustainable["refused"],
        **load,
    }
    out["ratio"] = out["served_p99_ms"] / max(1e-9, out["unloaded_p99_ms"])
    return out


async def _main(sleep_ms: float, seconds: float, rounds: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="donjon-standing-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        bundle = root / "fn"
        bundle.mkdir(mode=0o755)
        (bundle / "main.py").write_text(HANDLER.format(seconds=sleep_ms / 1000))
        (bundle / "main.py").chmod(0o644)
        cfg = sandboxes.config(bundle, "standing-bench", True)
        cfg = dataclasses.replace(cfg, concurrency=CONCURRENCY)
        pool = sandboxes.make_pool(sandboxes.make_host(root / "data"))
        pool.start()
        try:
            return [await _round(pool, cfg, seconds) for _ in range(rounds)]
        finally:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rounds = sandboxes.run_loop(lambda: _main(args.sleep_ms, args.seconds, args.rounds))
    for r in rounds:
        sys.stderr.write(
            f"  pool, {args.sleep_ms:g} ms handler, concurrency {CONCURRENCY}: unloaded p50/p99 "
            f"{r['unloaded_p50_ms']:.1f}/{r['unloaded_p99_ms']:.1f} ms; sustainable "
            f"{r['sustainable_rps']:.0f}/s ({r['sustainable_refused']} refused); 4x: "
            f"{r['offered']} offered, {r['served']} served, {r['shed']} shed, "
            f"{r['timed_out']} timed out; served p50/p99 {r['served_p50_ms']:.1f}/"
            f"{r['served_p99_ms']:.1f} ms ({r['ratio']:.1f}x the unloaded p99; "
            f"{r['settled_p99_ms']:.1f} ms after the first {SETTLING_S} s); shed p99 "
            f"{r['shed_p99_ms']:.1f} ms; started late p99 {r['started_late_p99_ms']:.1f} ms\n"
        )
    print(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
