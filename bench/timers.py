"""The hot path's timers: the loop's own against Donjon's shared ones (issue 14, target 1).

    .venv/bin/python bench/timers.py [--n 200000] [--rounds 3]

Under uvloop (as the node runs), per operation, best of `rounds`:
- a warm call's timeout: `asyncio.timeout(delay)` entered and left, against
  `Deadlines.timeout(delay)` (donjon/deadlines.py);
- a kept-alive connection's idle timer: `loop.call_later(delay, f)` then `cancel()`,
  against `Deadlines.call_later(delay, f)` then `cancel()`;
and the ratio of each pair. None of these timers fires: each is cancelled, as on the
hot path nearly every one is. For measurement only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import uvloop

from donjon.deadlines import deadlines


def _nothing() -> None:
    return None


async def _measure(n: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    shared = deadlines()
    out: dict[str, float] = {}

    started = time.perf_counter()
    for _ in range(n):
        async with asyncio.timeout(10):
            pass
    out["asyncio.timeout"] = (time.perf_counter() - started) / n

    started = time.perf_counter()
    for _ in range(n):
        async with shared.timeout(10):
            pass
    out["Deadlines.timeout"] = (time.perf_counter() - started) / n

    started = time.perf_counter()
    for _ in range(n):
        loop.call_later(5, _nothing).cancel()
    out["loop.call_later"] = (time.perf_counter() - started) / n

    started = time.perf_counter()
    for _ in range(n):
        shared.call_later(5, _nothing).cancel()
    out["Deadlines.call_later"] = (time.perf_counter() - started) / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, seconds in uvloop.run(_measure(args.n)).items():
            best[name] = min(best.get(name, seconds), seconds)
    load = Path("/proc/loadavg").read_text().split()[0]
    now = time.strftime("%H:%M:%S", time.gmtime())
    print(f"{now} UTC, load {load}; best of {args.rounds} x {args.n}")
    for ours, theirs in (
        ("Deadlines.timeout", "asyncio.timeout"),
        ("Deadlines.call_later", "loop.call_later"),
    ):
        print(
            f"  {theirs:22} {best[theirs] * 1e6:6.2f} us   {ours:22} {best[ours] * 1e6:6.2f} us"
            f"   {best[ours] / best[theirs]:.2f}x"
        )


if __name__ == "__main__":
    main()
