"""How cost grows with the functions deployed (issue 14, point 5).

    .venv/bin/python bench/scale.py [--functions 1000]   # on a node of its own

Called from bench_invoke.py (200 functions with --quick, 1,000 in the full run).
One node, its sandboxes reaped after `IDLE_S` idle seconds (DONJON_SANDBOX_IDLE_S,
so the bench sees the idle node in seconds rather than the default 5 minutes).
Functions are deployed one after the other through the API (`POST /v1/functions`
with the bundle, as `donjon deploy` does; the scanner runs on each, and the node
starts each new version before it takes traffic). At 10 functions, and again at
the full count:
- deploy time per function (median and p90 of the deploys up to that point, and
  of the last 10);
- the gateway's own RSS and USS;
- the idle node: every sandbox reaped, the memory of the node's whole process tree;
- the warm path of one function (`scale-hot`, isolation warm): 1 connection p50/p99,
  32 connections req/s;
- the USS of one warm instance of it (its bwrap tree's private pages).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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
IDLE_S = 3.0
SMALL = 10
HOT = "scale-hot"
#: Deploys timed one at a time at each count; clients deploying the bulk at once (one
#: caller's deploys at work or waiting are at most the deploy queue's two slots).
TIMED = 10
BULK = 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


def _sandbox_roots(pid: int) -> list[int]:
    return [
        p for p in sandboxes.children(pid) if sandboxes.cmdline(p).startswith(("bwrap", "setpriv"))
    ]


def _wait_reaped(pid: int, timeout_s: float) -> tuple[bool, float]:
    """Wait (bounded) until the node runs no sandbox; whether it got there, and when."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if not _sandbox_roots(pid):
            return True, time.monotonic() - t0
        time.sleep(0.25)
    return False, time.monotonic() - t0


def _tree_uss(pid: int) -> int:
    return sum(m["uss"] for p in sandboxes.tree(pid) if (m := sandboxes.smaps(p)) is not None)


def measure(node: Any, req: loadgen.Request, digest: str, load_s: float) -> dict[str, Any]:
    pid = node.proc.pid
    reaped, waited = _wait_reaped(pid, IDLE_S * 4 + 30)
    gateway = sandboxes.smaps(pid) or {}
    idle = {
        "reaped": reaped,
        "waited_s": waited,
        "gateway_rss": gateway.get("rss", 0),
        "gateway_uss": gateway.get("uss", 0),
        "tree_uss": _tree_uss(pid),
        "processes": len(sandboxes.tree(pid)),
    }
    loadgen.run(req, 8, 1)  # the hot function's instances started again
    one = loadgen.run(req, 1, max(1.0, load_s / 2))
    many = loadgen.run(req, 32, load_s)
    roots = sandboxes.instance_roots(pid, digest)
    instance = sandboxes.tree_memory(roots[0])["total"] if roots else None
    return {
        "idle": idle,
        "c1_p50_ms": one["p50_ms"],
        "c1_p99_ms": one["p99_ms"],
        "c32_rps": many["rps"],
        "c32_p99_ms": many["p99_ms"],
        "errors": one["errors"] + many["errors"],
        "instance": instance,
    }


def _deploy(client: Any, archive: bytes) -> tuple[float, str]:
    """One deploy through the API: its time, and the digest of what it deployed."""
    t0 = time.perf_counter()
    r = client.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    took = time.perf_counter() - t0
    if r.status_code != 201:
        raise RuntimeError(f"deploy failed: {r.status_code} {r.text[:300]}")
    return took, str(r.json()["digest"])


def _bundle(tmp: Path, name: str) -> bytes:
    from donjon.bundle import build_bundle

    d = sandboxes.write_bundle(tmp / "scale-fn", name, "warm")
    _, archive = build_bundle(d)
    shutil.rmtree(d)
    return archive


def _bulk(node: Any, tmp: Path, names: list[str]) -> float:
    """Deploy `names` from `BULK` clients at once (a refused deploy, 503, is retried);
    the seconds it took. Only to reach the count: the timed deploys are one at a time."""
    todo = list(reversed(names))
    lock = threading.Lock()

    def worker() -> None:
        with _client(node) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    name = todo.pop()
                archive = _bundle(tmp, name)
                for _ in range(100):  # bounded: DeployBusy says when to come back
                    r = client.post(
                        "/v1/functions",
                        content=archive,
                        headers={"content-type": "application/gzip"},
                    )
                    if r.status_code != 503:
                        break
                    time.sleep(0.2)
                if r.status_code != 201:
                    raise RuntimeError(f"deploy of {name} failed: {r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(BULK)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _client(node: Any) -> Any:
    import httpx

    return httpx.Client(
        base_url=node.url,
        verify=node.tls,
        timeout=120,
        headers={"authorization": f"Bearer {node.admin_key}"},
    )


def run(tmp: Path, functions: int, load_s: float) -> dict[str, Any]:
    """Deploy `functions` functions on a node of its own; measure at 10 and at `functions`."""
    from harness import start_node

    node = start_node(tmp / "scale-node", {"DONJON_SANDBOX_IDLE_S": str(IDLE_S)})
    out: dict[str, Any] = {"functions": functions, "idle_s": IDLE_S}
    try:
        key = node.create_key("scale", "invoker", limits=UNTHROTTLED)["key"]
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        req = loadgen.Request(f"{node.url}/v1/functions/{HOT}/invoke", BODY, headers, node.cert)
        digest = ""
        deployed = 0
        with _client(node) as client:
            for count in (SMALL, functions):
                if count - TIMED > deployed:  # the bulk: many clients at once, not timed
                    names = [f"scale-{i:04d}" for i in range(deployed, count - TIMED)]
                    took = _bulk(node, tmp, names)
                    out["bulk"] = {"count": len(names), "seconds": took}
                    log(f"  scale: {len(names)} deployed in {took:.1f} s ({BULK} clients)")
                    deployed += len(names)
                times = []
                while deployed < count:  # the last TIMED: one at a time, each timed
                    name = HOT if deployed == 0 else f"scale-{deployed:04d}"
                    took, done = _deploy(client, _bundle(tmp, name))
                    times.append(took)
                    digest = digest or done
                    deployed += 1
                m = {"deploy": _summary(times), **measure(node, req, digest, load_s)}
                out[str(count)] = m
                log(
                    f"  scale at {count}: deploy median {m['deploy']['median_s'] * 1000:.0f} ms; "
                    f"gateway RSS {m['idle']['gateway_rss'] / 2**20:.1f} MiB USS "
                    f"{m['idle']['gateway_uss'] / 2**20:.1f} MiB; idle tree USS "
                    f"{m['idle']['tree_uss'] / 2**20:.1f} MiB (reaped: {m['idle']['reaped']}); "
                    f"1 conn p50/p99 {m['c1_p50_ms']:.2f}/{m['c1_p99_ms']:.2f} ms; "
                    f"32 conns {m['c32_rps']:.0f} req/s (p99 {m['c32_p99_ms']:.1f} ms); "
                    f"instance USS {(m['instance'] or {}).get('uss', 0) / 2**20:.1f} MiB"
                )
    finally:
        node.stop()
        shutil.rmtree(sandboxes.node_staging(node.data_dir), ignore_errors=True)
    return out


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "count": len(times),
        "median_s": statistics.median(times),
        "p90_s": _pct(times, 90),
    }


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--load-s", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="donjon-scale-") as tmp:
        os.chmod(tmp, 0o755)
        print(json.dumps(run(Path(tmp), args.functions, args.load_s), indent=2))


if __name__ == "__main__":
    main()
