"""Overload (issue 14, target 6) on the design's floor: does a lean Python loop meet it?

    .venv/bin/python bench/overload_floor.py [--quick] [--pin] [--rounds N]
        [--variant VARIANT] [--shed N] [--factor F]

Target 6 asks that under 4x the sustainable rate the node sheds with 503/429 quickly:
the accepted calls' p99 within 3x the unloaded p99, memory bounded. Donjon's node misses
it on one core; this runs the same steps (bench/overload.py `run`) against the floor
(bench/floor_server.py: uvicorn + a raw ASGI app over HTTPS, worker processes over
persistent unix sockets, a SQLite writer process with group commit before the answer)
started as `--variant` (bench/warm_floor.py's variants: `bare` is uvicorn and the raw
app alone, no worker and no writer; `floor`, `workers8`; `controls8` and `monitor8`,
the lean controls with 8 workers, called with the controls' one key),
with `--shed N` when given: N calls in flight at most, each request beyond them
answered 503 from its head, its body unread (the cheapest shed the app can make).
Without `--shed` the floor admits every call: its queue is unbounded.

The steps (overload.py): warm-up, unloaded latency on one connection (p50/p99), the
sustainable rate (closed loop, 32 connections; refusals are not counted as served),
then an open loop at `factor` (4) times it on 256 connections, the server's RSS
before/peak/after, the CPU of its process tree. The floor has no /metrics:
`overload.shed_count` is replaced here by one that returns 0 (the node's own count of
sheds is then 0; the client's count of 503s is what is reported).

With `--pin` the server's process tree runs on CPU 0 and the load clients on the
other CPUs (overload.run does it). Printed per round: the unloaded p99, the
sustainable rate, the accepted p99 and its multiple of the unloaded p99, the share
of the sustainable rate served during the overload (the accepted calls a second over
the open loop's whole run, its drain included, over the sustainable rate), and the
shed p99, and the CPU seconds the machine spent outside this bench's processes during
the round (another load on the machine: the round is not clean); then a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import overload
import warm_floor

#: The variants this bench offers (warm_floor.VARIANTS' arguments).
CHOICES = tuple(warm_floor.VARIANTS)


def _no_metrics(url: str, cafile: str | None, admin_key: str) -> float:
    """`overload.shed_count` for the floor, which keeps no /metrics: always 0."""
    del url, cafile, admin_key
    return 0.0


def busy_s() -> float:
    """CPU seconds every CPU of the machine has been busy so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def ours_s(pid: int) -> float:
    """CPU seconds of this bench's processes: the server's tree, the clients, this one."""
    me = os.times()
    return overload.tree_cpu(pid) + overload.client_cpu() + me.user + me.system


def start(
    tmp: Path, cert: str, key: str, variant: str, shed: int | None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The floor server as `variant`, with `--shed` when given; its process, port, log."""
    from harness import free_port

    port = free_port()
    db = tmp / f"floor-{variant}-{port}.db"
    log = tmp / f"floor-{variant}-{port}.log"
    argv = [
        sys.executable,
        str(BENCH / "floor_server.py"),
        "serve",
        str(port),
        cert,
        key,
        str(db),
        *warm_floor.VARIANTS[variant],
    ]
    if shed is not None:
        argv += ["--shed", str(shed)]
    with log.open("wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
    warm_floor._wait_port(proc, port, f"the floor ({variant}); its log: {log}")
    return proc, port, log


def figures(out: dict[str, Any]) -> dict[str, Any]:
    """The round's figures from overload.run's result."""
    load = out["open_loop"]
    unloaded_p99 = out["unloaded"]["p99_ms"]
    accepted_p99 = load["accepted"]["p99_ms"]
    sustainable = out["sustainable_rps"]
    return {
        "unloaded_p50_ms": out["unloaded"]["p50_ms"],
        "unloaded_p99_ms": unloaded_p99,
        "sustainable_rps": sustainable,
        "sustainable_errors": out["sustainable_errors"],
        "offered_rps": out["offered_rps"],
        "offered": load["offered"],
        "statuses": load["statuses"],
        "errors": load["errors"],
        "unanswered": load["unanswered"],
        "accepted": load["accepted"]["count"],
        "accepted_p50_ms": load["accepted"]["p50_ms"],
        "accepted_p99_ms": accepted_p99,
        "accepted_multiple": accepted_p99 / unloaded_p99 if unloaded_p99 else float("nan"),
        "accepted_rps": load["accepted_rps"],
        "share_served": load["accepted_rps"] / sustainable if sustainable else float("nan"),
        "accepted_wire_p99_ms": load["accepted_wire"]["p99_ms"],
        "accepted_queued_p99_ms": load["accepted_queued"]["p99_ms"],
        "shed": load["shed"]["count"],
        "shed_p50_ms": load["shed"]["p50_ms"],
        "shed_p99_ms": load["shed"]["p99_ms"],
        "load_seconds": load["seconds"],
        "rss_before_mib": out["rss_before"] / 2**20,
        "rss_peak_mib": out["rss_peak"] / 2**20,
        "rss_after_mib": out["rss_after"] / 2**20,
        "node_cpu_s": out["node_cpu_s"],
        "client_cpu_s": out["client_cpu_s"],
        "load_wall_s": out["load_wall_s"],
        "within_3x": accepted_p99 <= 3 * unloaded_p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s steps (else 5 s)")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, client on the rest")
    parser.add_argument("--rounds", type=int, default=1, help="runs on the one server")
    parser.add_argument("--variant", choices=CHOICES, default="floor")
    parser.add_argument("--shed", type=int, metavar="N", help="the server's --shed N")
    parser.add_argument(
        "--factor", type=float, default=overload.FACTOR, help="offered / sustainable (4)"
    )
    args = parser.parse_args()
    from donjon.gateway.tls import create_self_signed

    overload.shed_count = _no_metrics  # the floor has no /metrics (see the docstring)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average "
        f"{' '.join(load)}; variant {args.variant}, shed {args.shed}, pin {args.pin}",
        flush=True,
    )
    keyed = "--controls" in warm_floor.VARIANTS[args.variant]
    bearer = warm_floor.CONTROLS_KEY if keyed else "x"
    headers = {"content-type": "application/json", "authorization": f"Bearer {bearer}"}
    tmp = Path(tempfile.mkdtemp(prefix="overload-floor-"))
    rounds: list[dict[str, Any]] = []
    try:
        cert, key = tmp / "cert.pem", tmp / "key.pem"
        create_self_signed(cert, key)
        proc, port, _ = start(tmp, str(cert), str(key), args.variant, args.shed)
        try:
            base = f"https://127.0.0.1:{port}"
            for r in range(max(1, args.rounds)):
                busy, ours = busy_s(), ours_s(proc.pid)
                out = overload.run(
                    base,
                    "bench",
                    headers,
                    str(cert),
                    proc.pid,
                    "",
                    3.0 if args.quick else 5.0,
                    pin=args.pin,
                    factor=args.factor,
                )
                row = figures(out)
                # Others' CPU during the round (another bench, a build): what it is worth.
                row["foreign_cpu_s"] = (busy_s() - busy) - (ours_s(proc.pid) - ours)
                rounds.append(row)
                print(
                    f"round {r + 1}: unloaded p99 {row['unloaded_p99_ms']:.2f} ms, "
                    f"sustainable {row['sustainable_rps']:.0f} req/s, "
                    f"accepted p99 {row['accepted_p99_ms']:.2f} ms "
                    f"({row['accepted_multiple']:.1f}x unloaded), "
                    f"served {row['share_served']:.2f} of sustainable, "
                    f"shed p99 {row['shed_p99_ms']:.2f} ms ({row['shed']} shed); RSS "
                    f"{row['rss_before_mib']:.0f}/{row['rss_peak_mib']:.0f}/"
                    f"{row['rss_after_mib']:.0f} MiB; others' CPU {row['foreign_cpu_s']:.1f} s",
                    flush=True,
                )
        finally:
            warm_floor.stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        "variant": args.variant,
        "shed": args.shed,
        "pin": args.pin,
        "quick": args.quick,
        "factor": args.factor,
        "load_average": load,
        "rounds": rounds,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
