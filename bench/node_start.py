"""A node's start: from `donjon serve` to its first answer, and its memory once up.

    .venv/bin/python bench/node_start.py [--rounds 7] [--coverage]

`donjon up` and every node a test starts pay this. One data dir is initialised
once (`donjon init`, the advisory cache warmed by a first, unmeasured start);
then, in rounds, each server is started, polled on GET /healthz over TLS until
it answers 200, measured and stopped (SIGTERM):
- `donjon serve`, nothing deployed (the node's own start: the gateway, its
  audit writer and scanner helper processes);
- the baseline, bare Starlette on uvicorn over HTTPS with the same certificate
  (bench/baselines.py, as the warm bench serves it), started in the same round;
  its first answer is its app's 404 for /healthz.
Printed: the medians of the time to the first answer, the CPU its process tree
used until then (the machine's load moves that much less than the time), and the
RSS and USS of the server process and of its whole process tree once it
answered; the ratios are Donjon's against the baseline's of the same rounds.

`--coverage` adds, in each round, `donjon serve` as the test suite's CI run starts it:
coverage starting itself in the node's Pythons (pyproject.toml's configuration,
`patch = ["subprocess"]`, its data in a temporary directory). The test suite starts
about 190 nodes; this is what each costs it, and which process pays.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import sandboxes

from harness import donjon_env, free_port, run_cli


def _first_answer(
    proc: subprocess.Popen[bytes], url: str, tls: ssl.SSLContext, ready: int = 200
) -> float:
    """Seconds from now until GET /healthz answers `ready` (the process was just started;
    the baseline has no such route: its first answer is a 404 from the app)."""
    t0 = time.perf_counter()
    deadline = t0 + 120
    with httpx.Client(verify=tls, timeout=1) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}) before it answered")
            try:
                if client.get(f"{url}/healthz").status_code == ready:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                time.sleep(0.01)
    raise SystemExit("the server did not answer within 120 s")


def _memory(pid: int) -> dict[str, float]:
    """Memory and CPU so far of the server process and of its tree (CPU: reaped
    children included, so the probes the node ran at start count)."""
    own = sandboxes.smaps(pid) or {}
    tree = [m for p in sandboxes.tree(pid) if (m := sandboxes.smaps(p)) is not None]
    return {
        "tree_cpu": sandboxes.tree_cpu(pid),
        "rss": own.get("rss", 0),
        "uss": own.get("uss", 0),
        "tree_rss": sum(m["rss"] for m in tree),
        "tree_uss": sum(m["uss"] for m in tree),
        "processes": len(tree),
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _coverage_env(data: Path) -> dict[str, str]:
    """Coverage started in each of the node's Pythons with the project's configuration,
    as `patch = ["subprocess"]` starts it in a test run's; its data kept apart."""
    return {
        "COVERAGE_PROCESS_START": str(BENCH.parent / "pyproject.toml"),
        "COVERAGE_FILE": str(data / "cov"),
    }


def _by_process(root: int) -> dict[str, float]:
    """CPU seconds so far of each process under `root` by what it runs (reaped children
    counted with their parent)."""
    out: dict[str, float] = {}
    for pid in sandboxes.tree(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = next((a.decode() for a in argv if a.startswith(b"donjon.")), "other")
        name = {"donjon.cli": "gateway"}.get(name, name.removeprefix("donjon."))
        own = sandboxes.tree_cpu(pid) - sum(sandboxes.tree_cpu(c) for c in sandboxes.children(pid))
        out[name] = out.get(name, 0.0) + own
    return out


def _donjon(data_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**donjon_env(data_dir, url), **(extra_env or {})}
    with open(data_dir / "serve.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    tls = ssl.create_default_context(cafile=str(data_dir / "tls" / "cert.pem"))
    try:
        seconds = _first_answer(proc, url, tls)
        by_process = {f"cpu:{k}": v for k, v in _by_process(proc.pid).items()}
        return {"s": seconds, **_memory(proc.pid), **by_process}
    finally:
        _stop(proc)


def _starlette(data_dir: Path) -> dict[str, Any]:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "baselines.py"), "starlette", str(port), str(cert), str(key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tls = ssl.create_default_context(cafile=str(cert))
    try:
        seconds = _first_answer(proc, url, tls, ready=404)
        return {"s": seconds, **_memory(proc.pid)}
    finally:
        _stop(proc)


def run(rounds: int, coverage: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="donjon-start-") as tmp:
        data_dir = Path(tmp) / "data"
        env = donjon_env(data_dir)
        run_cli(env, "init", "--json")
        _donjon(data_dir)  # the advisory cache and the page cache: not measured
        _starlette(data_dir)
        covered = _coverage_env(Path(tmp)) if coverage else None
        donjon: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        measured: list[dict[str, Any]] = []
        for _ in range(rounds):
            donjon.append(_donjon(data_dir))
            bare.append(_starlette(data_dir))
            if covered is not None:
                measured.append(_donjon(data_dir, covered))
    out: dict[str, Any] = {"rounds": rounds}
    sets = (("donjon", donjon), ("starlette", bare), ("coverage", measured))
    for name, runs in [(n, r) for n, r in sets if r]:
        keys = {k: None for r in runs for k in r}  # a process seen in any round
        out[name] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
        out[name]["s_all"] = [round(r["s"], 3) for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--coverage", action="store_true", help="also start the node as CI's coverage run does"
    )
    args = parser.parse_args()
    out = run(args.rounds, args.coverage)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    d, s = out["donjon"], out["starlette"]
    mib = 2**20
    print(f"node start, medians of {out['rounds']} rounds (load {os.getloadavg()[0]:.2f})")
    print(
        f"  first answer: donjon {d['s'] * 1e3:.0f} ms, starlette {s['s'] * 1e3:.0f} ms:"
        f" {d['s'] / s['s']:.2f}x   (donjon's rounds: {d['s_all']})"
    )
    print(
        f"  CPU of the tree until then: donjon {d['tree_cpu'] * 1e3:.0f} ms,"
        f" starlette {s['tree_cpu'] * 1e3:.0f} ms: {d['tree_cpu'] / s['tree_cpu']:.2f}x"
    )
    print(
        f"  server process: RSS {d['rss'] / mib:.1f} MiB against {s['rss'] / mib:.1f} MiB"
        f" ({d['rss'] / s['rss']:.2f}x), USS {d['uss'] / mib:.1f} MiB"
    )
    print(
        f"  whole tree: {d['processes']:.0f} processes, RSS {d['tree_rss'] / mib:.1f} MiB,"
        f" USS {d['tree_uss'] / mib:.1f} MiB ({d['tree_uss'] / s['tree_uss']:.2f}x"
        f" starlette's {s['tree_uss'] / mib:.1f} MiB)"
    )
    print(f"  CPU by process: {_processes(d)}")
    if "coverage" in out:
        c = out["coverage"]
        print(
            f"  under coverage: first answer {c['s'] * 1e3:.0f} ms, CPU of the tree"
            f" {c['tree_cpu'] * 1e3:.0f} ms ({c['tree_cpu'] / d['tree_cpu']:.2f}x without);"
            f" by process: {_processes(c)}"
        )


def _processes(figures: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.removeprefix('cpu:')} {v * 1e3:.0f} ms"
        for k, v in sorted(figures.items())
        if k.startswith("cpu:")
    )


if __name__ == "__main__":
    main()
