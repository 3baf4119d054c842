"""The warm path's design floor beside bare Starlette over HTTPS (issue 14, target 1).

    .venv/bin/python bench/warm_floor.py [--rounds 3] [--seconds 2] [--variants floor,inproc]

Target 1 asks, every control on, for at least 0.5x bare Starlette's throughput
over HTTPS and a whole-tree CPU per request within 3x Starlette's. The floor
(bench/floor_server.py) is Donjon's architecture with no control: uvicorn +
a raw ASGI app over HTTPS, each request sent to a separate Python worker over a
persistent unix socket and a record appended durably by a separate writer
process with group commit before the response. What it reaches against
Starlette is what the design allows before any control is paid for.

Each round loads every server with the plan bench_invoke.py uses (8
connections for the warm-up, then 32 connections, wrk when installed), the
servers alternated within the round; CPU per request is the server's whole
process tree (worker and writer included) from /proc, as bench_invoke.py
counts Donjon's. The variants:
- `floor`: worker process + writer process (the design);
- `inproc`: the handler in the server process, writer process (no worker hop);
- `noaudit`: worker process, no append (no durable record);
- `bare`: neither (uvicorn + the raw ASGI app alone, no Starlette);
- `workers8`: the design with 8 workers (Donjon's bench function may run 8);
- `controls`, `controls8`: `floor` and `workers8` with target 1's controls at their
  leanest (bench/floor_controls.py): a lower bound on any Python gateway's controls;
- `monitor`, `monitor8`: `controls`, `controls8` with Donjon's own runtime detectors
  fed every call.
`start` is what bench_invoke.py calls to add the floor to its load phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import loadgen
import sandboxes

BODY = b'{"name": "bench"}'
PATH = "/v1/functions/bench/invoke"
#: The one key the `controls` variants accept (a fixed bench value, not a secret).
CONTROLS_KEY = "dj_0123456789abcdef_" + "k" * 43

VARIANTS: dict[str, list[str]] = {
    "floor": [],
    "inproc": ["--worker", "inproc"],
    "noaudit": ["--audit", "none"],
    "bare": ["--worker", "inproc", "--audit", "none"],
    "workers8": ["--workers", "8"],
    "controls": ["--controls", CONTROLS_KEY],
    "controls8": ["--controls", CONTROLS_KEY, "--workers", "8"],
    "monitor": ["--controls", CONTROLS_KEY, "--monitor"],
    "monitor8": ["--controls", CONTROLS_KEY, "--monitor", "--workers", "8"],
}


def _wait_port(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not start")


def start(
    tmp: Path, cert: str, key: str, variant: str = "floor", api_key: str = CONTROLS_KEY
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the floor server (`variant`) on a free port with this certificate; a
    `controls` or `monitor` variant accepts `api_key` as its one key."""
    from harness import free_port

    port = free_port()
    db = tmp / f"floor-{variant}-{port}.db"
    log = tmp / f"floor-{variant}-{port}.log"
    argv = [sys.executable, str(BENCH / "floor_server.py"), "serve", str(port), cert, key, str(db)]
    with log.open("wb") as f:
        extra = [api_key if a == CONTROLS_KEY else a for a in VARIANTS[variant]]
        proc = subprocess.Popen([*argv, *extra], stdout=f, stderr=subprocess.STDOUT)
    _wait_port(proc, port, f"the floor ({variant}); its log: {log}")
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server; its worker and writer end when their sockets close."""
    children = sandboxes.tree(proc.pid)[1:]
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # a request that never got its answer holds it
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)


def _writer_stats(pid: int) -> dict[str, float]:
    """The floor writer's counters (floor_server.py keeps them beside its database)."""
    argv = sandboxes.cmdline(pid).split(" ")
    if "serve" not in argv:
        return {}
    stats = Path(argv[argv.index("serve") + 4] + ".stats")
    try:
        return dict(json.loads(stats.read_text()))
    except (OSError, ValueError):
        return {}


def measure(
    url: str, pid: int, cafile: str, connections: int, seconds: float, key: str = "x"
) -> dict[str, Any]:
    """bench_invoke.py's load step: warm-up, then `connections` for `seconds`, tree CPU."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    req = loadgen.Request(url, BODY, headers, cafile)
    loadgen.run(req, 8, 1)
    time.sleep(0.3)  # the writer's counters of the warm-up are written
    cpu0, groups0 = sandboxes.tree_cpu(pid), _writer_stats(pid)
    client0 = os.times()
    res = loadgen.run(req, connections, seconds)
    client1 = os.times()
    cpu = sandboxes.tree_cpu(pid) - cpu0
    time.sleep(0.3)
    groups1 = _writer_stats(pid)
    if groups0 and groups1 and groups1["groups"] > groups0["groups"]:
        n = groups1["groups"] - groups0["groups"]
        res["records_per_group"] = (groups1["records"] - groups0["records"]) / n
        res["commit_ms"] = (groups1["commit_s"] - groups0["commit_s"]) * 1000 / n
    client = client1.children_user + client1.children_system
    client -= client0.children_user + client0.children_system
    res["cpu_ms_per_req"] = cpu * 1000 / max(1, res["requests"])
    res["client_ms_per_req"] = client * 1000 / max(1, res["requests"])
    return res


def run(variants: list[str], rounds: int, seconds: float) -> dict[str, list[dict[str, Any]]]:
    """Rounds of Starlette HTTPS then each variant, every server started once."""
    from donjon.gateway.tls import create_self_signed

    tmp = Path(tempfile.mkdtemp(prefix="warmfloor-"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    create_self_signed(cert, key)  # the kind of pair a node makes (ECDSA P-256)
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        from harness import free_port

        port = free_port()
        base = subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "baselines.py"),
                "starlette",
                str(port),
                str(cert),
                str(key),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers["starlette-tls"] = (base, port)
        _wait_port(base, port, "bare Starlette")
        for v in variants:
            servers[f"floor-{v}"] = start(tmp, str(cert), str(key), v)
        out: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for r in range(rounds):
            for name, (proc, port) in servers.items():
                path = PATH if name.startswith("floor") else "/v1/functions/b/invoke"
                keyed = "--controls" in VARIANTS.get(name.removeprefix("floor-"), [])
                bearer = CONTROLS_KEY if keyed else "x"
                url = f"https://127.0.0.1:{port}{path}"
                res = measure(url, proc.pid, str(cert), 32, seconds, bearer)
                out[name].append(res)
                audit = (
                    f"  {res['records_per_group']:.1f} records/commit, {res['commit_ms']:.2f} ms"
                    if "commit_ms" in res
                    else ""
                )
                print(
                    f"  round {r + 1} {name:16} {res['rps']:8.0f} req/s  CPU/req "
                    f"{res['cpu_ms_per_req']:.3f} ms  client {res['client_ms_per_req']:.3f} ms"
                    f"  errors {res['errors']}{audit}",
                    file=sys.stderr,
                    flush=True,
                )
        return out
    finally:
        for proc, _ in servers.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--variants", default="floor,inproc,noaudit,bare")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {' '.join(load)}")
    results = run(variants, args.rounds, args.seconds)
    base = results.pop("starlette-tls")
    print(f"{'server':18} {'req/s (rounds)':>30} {'CPU/req ms (rounds)':>26}  vs Starlette HTTPS")
    for name, runs in [("starlette-tls", base), *results.items()]:
        rps = " ".join(f"{r['rps']:.0f}" for r in runs)
        cpu = " ".join(f"{r['cpu_ms_per_req']:.3f}" for r in runs)
        ratios = " ".join(
            f"{r['rps'] / b['rps']:.2f}x/{r['cpu_ms_per_req'] / b['cpu_ms_per_req']:.2f}x"
            for r, b in zip(runs, base, strict=True)
        )
        print(f"{name:18} {rps:>30} {cpu:>26}  {ratios if name != 'starlette-tls' else ''}")
    print("(ratios per round: req/s, CPU per request; target 1 asks >= 0.5x and <= 3x)")


if __name__ == "__main__":
    main()
