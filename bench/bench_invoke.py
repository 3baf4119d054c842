"""Donjon's invoke path beside its baselines, measured on this machine in one run.

    .venv/bin/python bench/bench_invoke.py [--quick] [--json FILE] [--profile DIR]

Prints one table: each figure of Donjon beside a baseline measured in the
same run, the ratio, the target from DESIGN.md ("Performance targets") and
whether it is met. Nothing here is asserted in the test suite (STYLE.md).

What runs (all on loopback; clients and servers share the machine's cores):
1. Warm path: a real node (`donjon serve`: HTTPS, API key of an invoker
   restricted to the bench functions, input schema, audit with group commit)
   serving an `isolation: warm` function, beside the same handler in a bare
   Starlette app on uvicorn (HTTPS with the node's certificate, and plain
   HTTP), in a Flask + waitress server (OpenFaaS python3-http, plain HTTP), and
   the design's floor: Donjon's processes and hops from bare parts, with no
   control (bench/warm_floor.py).
2. `isolation: invocation` through the gateway, and per call through the
   sandbox pool directly, beside the fork-and-wait floor.
3. Cold start: first call after deploy (gateway) and sandbox start + first
   call (pool), beside `python -I -S -B -c 'import main'`, and the true cold
   start beside bwrap + that import with the function's own profile, in the
   same rounds (bench/coldstart.py).
4. Memory of a warm instance (USS/PSS of its bwrap process tree).
5. Overload (overload.py): 4x the warm function's sustainable rate, open loop.
6. Scale (scale.py): 1,000 functions deployed (50 with --quick) against 10.
7. Audit append rates and `verify_log` time, beside SQLite alone.

Load comes from `wrk` (Debian package) when installed, else from a Python
asyncio client (bench/loadgen.py); the bench installs nothing itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The bench's key is given limits of its own, far above anything it can reach: it
#: measures the gateway, not the per-principal limits (docs/limits.md, issue 15).
UNTHROTTLED = {"rate": "1000000/second", "burst": 1000000, "concurrency": 100000}

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

import audit_phase
import clone_floor
import coldstart
import loadgen
import overload
import profiling
import report
import sandboxes
import scale
import warm_floor

import donjon
from donjon.sandbox import SandboxHost
from harness import LiveNode, free_port, start_node

BODY = b'{"name": "bench"}'


@dataclass(frozen=True)
class Plan:
    rounds: int
    warmup_s: int
    load_s: int
    latency_s: int
    connections: int
    cold_runs: int
    floor_runs: int
    pool_calls: int
    fork_calls: int
    audit_verify: int
    audit_concurrent: int
    audit_sync: int
    audit_waiters: int
    #: Functions deployed for the scale phase (scale.py) and seconds of each overload step.
    scale_functions: int
    overload_s: float


FULL = Plan(
    rounds=3,
    warmup_s=1,
    load_s=3,
    latency_s=2,
    connections=32,
    cold_runs=5,
    floor_runs=15,
    pool_calls=1000,
    fork_calls=2000,
    audit_verify=1_000_000,
    audit_concurrent=50_000,
    audit_sync=200,
    audit_waiters=512,
    scale_functions=1000,
    overload_s=4.0,
)
QUICK = Plan(
    rounds=1,
    warmup_s=1,
    load_s=2,
    latency_s=1,
    connections=32,
    cold_runs=3,
    floor_runs=7,
    pool_calls=300,
    fork_calls=500,
    audit_verify=100_000,
    audit_concurrent=20_000,
    audit_sync=100,
    audit_waiters=512,
    scale_functions=50,
    overload_s=2.0,
)


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pid: int
    cafile: str | None
    note: str


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- machine and servers ------------------------------------------------------------------


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (anything else running skews the figures)."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def machine() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "client": loadgen.client_name(),
        "donjon": git("rev-parse", "--short", "HEAD")
        + (" (dirty tree)" if git("status", "--porcelain", "--untracked-files=no", "src") else ""),
        "donjon_path": str(Path(donjon.__file__).parent),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "busy_before": cpu_busy(),
    }


def start_baseline(kind: str, tmp: Path, *tls: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    output = tmp / f"{kind}-{port}.log"
    with output.open("wb") as f:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines.py"), kind, str(port), *tls],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline {kind} exited: {output.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"baseline {kind} did not start")


# -- phases ---------------------------------------------------------------------------------


def load_phase(targets: list[Target], headers: dict[str, str], plan: Plan) -> dict[str, Any]:
    """Best of `plan.rounds` interleaved rounds per target (highest throughput)."""
    best: dict[str, Any] = {}
    for r in range(plan.rounds):
        for t in targets:
            req = loadgen.Request(t.url, BODY, headers, t.cafile)
            loadgen.run(req, 8, plan.warmup_s)
            cpu0 = sandboxes.tree_cpu(t.pid)
            res = loadgen.run(req, plan.connections, plan.load_s)
            cpu = sandboxes.tree_cpu(t.pid) - cpu0
            res["cpu_ms_per_req"] = cpu * 1000 / max(1, res["requests"])
            one = loadgen.run(req, 1, plan.latency_s)
            res.update(
                c1_rps=one["rps"],
                c1_p50_ms=one["p50_ms"],
                c1_p99_ms=one["p99_ms"],
                errors=res["errors"] + one["errors"],
            )
            log(
                f"  round {r + 1} {t.name:18} {res['rps']:8.0f} req/s  p50 {res['p50_ms']:7.2f} ms"
                f"  p99 {res['p99_ms']:7.2f} ms  | 1 conn p50 {one['p50_ms']:6.2f} ms"
                f"  | errors {res['errors']}"
            )
            prev = best.get(t.name)
            if prev is None or res["rps"] > prev["rps"]:
                if prev is not None and prev["c1_p50_ms"] < res["c1_p50_ms"]:
                    res.update(
                        c1_rps=prev["c1_rps"],
                        c1_p50_ms=prev["c1_p50_ms"],
                        c1_p99_ms=prev["c1_p99_ms"],
                    )
                best[t.name] = res
            elif res["c1_p50_ms"] < prev["c1_p50_ms"]:
                prev.update(
                    c1_rps=res["c1_rps"], c1_p50_ms=res["c1_p50_ms"], c1_p99_ms=res["c1_p99_ms"]
                )
    return best


def profile_phase(
    node: LiveNode,
    targets: list[Target],
    headers: dict[str, str],
    digests: dict[str, str],
    plan: Plan,
    out: Path,
) -> list[str]:
    """Sample the server and each sandbox under load; the summaries of the samples."""
    out.mkdir(parents=True, exist_ok=True)
    if profiling.py_spy() is None:
        log("  --profile: py-spy not found (pip install py-spy into the venv); skipped")
        return []
    for t in targets:
        if not t.name.startswith("donjon-"):
            continue
        function = t.name.removeprefix("donjon-")
        roots = sandboxes.instance_roots(node.proc.pid, digests[function])
        pythons = sandboxes.pythons(roots[0]) if roots else []
        seconds = max(3, plan.load_s)
        procs = [profiling.record(node.proc.pid, seconds, out / f"{function}-server.raw")]
        for i, pid in enumerate(pythons[:2]):  # the supervisor, then a worker
            procs.append(profiling.record(pid, seconds, out / f"{function}-sandbox-{i}.raw"))
        time.sleep(0.5)
        loadgen.run(loadgen.Request(t.url, BODY, headers, t.cafile), plan.connections, seconds)
        for p in procs:
            if p is not None:
                p.wait(60)
    return [profiling.summary(raw) for raw in sorted(out.glob("*.raw"))]


def gateway_cold(node: LiveNode, tmp: Path, plan: Plan) -> dict[str, Any]:
    """Per mode: deploy time (the node starts the new version before it takes traffic),
    first call after deploy, and the call after that."""
    import httpx

    from donjon.bundle import build_bundle

    out: dict[str, Any] = {}
    for mode in ("warm", "invocation"):
        runs: dict[str, list[float]] = {"deploy_s": [], "first_s": [], "second_s": []}
        for i in range(plan.cold_runs):
            name = f"cold-{mode}-{i}"
            _, archive = build_bundle(sandboxes.write_bundle(tmp / "cold", name, mode))
            with httpx.Client(
                base_url=node.url,
                verify=node.tls,
                timeout=60,
                headers={"authorization": f"Bearer {node.admin_key}"},
            ) as c:
                c.get("/healthz")
                t0 = time.perf_counter()
                r = c.post(
                    "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
                )
                runs["deploy_s"].append(time.perf_counter() - t0)
                r.raise_for_status()
                for key in ("first_s", "second_s"):
                    t0 = time.perf_counter()
                    r = c.post(f"/v1/functions/{name}/invoke", content=BODY)
                    runs[key].append(time.perf_counter() - t0)
                    r.raise_for_status()
                c.delete(f"/v1/functions/{name}")
        out[mode] = {k: sandboxes.median(v) for k, v in runs.items()}
    return out


def node_phase(tmp: Path, host: SandboxHost, plan: Plan, profile: Path | None) -> dict[str, Any]:
    bundles = {
        m: sandboxes.write_bundle(tmp / "fn", f"bench-{m}", m) for m in ("warm", "invocation")
    }
    node = start_node(tmp / "node")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        digests = {m: str(node.deploy(b)["digest"]) for m, b in bundles.items()}
        # The pool phase runs the bundle as deployed: built, with its unchecked-hash pycs.
        deployed = sandboxes.copy_bundle(
            node.data_dir / "bundles" / digests["warm"], tmp / "pool", "bench-pool"
        )
        key = node.create_key("bench", "invoker", ["bench-warm", "bench-invocation"], UNTHROTTLED)[
            "key"
        ]
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        path = "/v1/functions/{}/invoke"
        starlette_tls, p1 = start_baseline(
            "starlette", tmp, node.cert, str(node.data_dir / "tls" / "key.pem")
        )
        starlette_http, p2 = start_baseline("starlette", tmp)
        flask, p3 = start_baseline("flask", tmp)
        floor, p4 = warm_floor.start(tmp, node.cert, str(node.data_dir / "tls" / "key.pem"))
        lean, p5 = warm_floor.start(
            tmp, node.cert, str(node.data_dir / "tls" / "key.pem"), "monitor8", key
        )
        procs += [starlette_tls, starlette_http, flask, floor, lean]
        targets = [
            Target(
                "donjon-warm",
                node.url + path.format("bench-warm"),
                node.proc.pid,
                node.cert,
                "HTTPS, key, schema, audit",
            ),
            Target(
                "donjon-invocation",
                node.url + path.format("bench-invocation"),
                node.proc.pid,
                node.cert,
                "HTTPS, key, schema, audit",
            ),
            Target(
                "starlette-tls",
                f"https://127.0.0.1:{p1}" + path.format("b"),
                starlette_tls.pid,
                node.cert,
                "bare app, HTTPS",
            ),
            Target(
                "starlette-http",
                f"http://127.0.0.1:{p2}" + path.format("b"),
                starlette_http.pid,
                None,
                "bare app, plain HTTP",
            ),
            Target(
                "flask-waitress",
                f"http://127.0.0.1:{p3}" + path.format("b"),
                flask.pid,
                None,
                "OpenFaaS python3-http, plain HTTP",
            ),
            Target(
                "design-floor",
                f"https://127.0.0.1:{p4}{warm_floor.PATH}",
                floor.pid,
                node.cert,
                "Donjon's processes from bare parts, no control (bench/warm_floor.py)",
            ),
            Target(
                "lean-controls",
                f"https://127.0.0.1:{p5}{warm_floor.PATH}",
                lean.pid,
                node.cert,
                "the design floor, 8 workers, controls at their leanest (warm_floor.py monitor8)",
            ),
        ]
        log(
            f"load: {plan.connections} connections, {plan.load_s} s each, "
            f"{plan.rounds} round(s), client {loadgen.client_name()}"
        )
        out: dict[str, Any] = {
            "load": load_phase(targets, headers, plan),
            "deployed_bundle": str(deployed),
        }
        if profile is not None:
            log(f"profile (not measured): py-spy into {profile}")
            out["profiles"] = profile_phase(node, targets, headers, digests, plan, profile)
        log("memory of the instances")
        out["memory"] = {}
        for mode, digest in digests.items():
            roots = sandboxes.instance_roots(node.proc.pid, digest)
            out["memory"][mode] = sandboxes.tree_memory(roots[0]) if roots else None
            if roots:
                out["memory"][mode]["instances"] = len(roots)
        out["memory"]["bare"] = sandboxes.bare_memory(host, deployed)
        log(f"overload: {overload.FACTOR:.0f}x the sustainable rate, open loop")
        out["overload"] = overload.run(
            node.url,
            "bench-warm",
            headers,
            node.cert,
            node.proc.pid,
            node.admin_key,
            plan.overload_s,
        )
        out["overload"]["client_floor"] = overload.client_floor(
            out["overload"]["offered_rps"],
            plan.overload_s,
            tmp,
            node.cert,
            str(node.data_dir / "tls" / "key.pem"),
        )
        log("cold starts through the gateway")
        out["gateway_cold"] = gateway_cold(node, tmp, plan)
        out["resource_control"] = _resource_mode()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        node.stop()
        shutil.rmtree(sandboxes.node_staging(node.data_dir), ignore_errors=True)
    out["leaked_cgroups"] = _sweep_cgroups()
    return out


def _sweep_cgroups() -> int:
    """Count (then remove) the empty cgroups Donjon left behind once its sandboxes ended."""
    time.sleep(0.5)  # let killed sandboxes finish exiting: what is left now stays
    leaked = sandboxes.leaked_cgroups()
    sandboxes.remove_cgroups(leaked)
    return len(leaked)


def _resource_mode() -> str:
    from donjon.sandbox import detect_resource_control

    return detect_resource_control().describe()


def sandbox_phase(bundle: Path, host: SandboxHost, plan: Plan) -> dict[str, Any]:
    log("sandbox pool, driven directly")
    out: dict[str, Any] = {
        "warm": sandboxes.pool_calls(host, bundle, True, plan.pool_calls, plan.cold_runs),
        "invocation": sandboxes.pool_calls(host, bundle, False, plan.pool_calls, plan.cold_runs),
    }
    log("true cold starts beside bwrap + import with the same profile (bench/coldstart.py)")
    try:
        out["coldstart"] = coldstart.run(host, bundle, plan.floor_runs)
    except (subprocess.CalledProcessError, ValueError) as e:
        log(f"  (the true cold start beside its floor was skipped: {e})")
    out["leaked_cgroups"] = _sweep_cgroups()
    log("floors: fork-and-wait, import")
    floor = sandboxes.fork_floor(host, bundle, plan.fork_calls)
    out["fork_floor_s"], out["fork_floor_rss"] = floor["per_call_s"], floor["rss"]
    out["import_floor_s"] = sandboxes.median(sandboxes.import_floor(host, bundle, plan.floor_runs))
    try:
        out["fork_floor_bwrap_s"] = sandboxes.fork_floor(
            host, bundle, plan.fork_calls, inside_bwrap=True
        )["per_call_s"]
        out["import_floor_bwrap_s"] = sandboxes.median(
            sandboxes.import_floor(host, bundle, plan.floor_runs, inside_bwrap=True)
        )
    except (subprocess.CalledProcessError, ValueError) as e:
        log(f"  (the floors inside bwrap were skipped: {e})")
    log("floor: one clone(NEWPID|NEWNS|NEWIPC) + wait, inside bwrap")
    try:
        out["clone_floor"] = clone_floor.clone_floor(host, bundle, plan.fork_calls)
    except (subprocess.CalledProcessError, ValueError) as e:
        log(f"  (the clone floor was skipped: {e})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter phases (about 2 minutes; 50 functions for the scale phase)",
    )
    parser.add_argument("--json", type=Path, help="also write every raw figure to this file")
    parser.add_argument(
        "--profile",
        type=Path,
        help="after the measured phases, sample the server and sandboxes "
        "under load with py-spy into this dir and print where time goes",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    results: dict[str, Any] = {"plan": asdict(plan), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        os.chmod(tmp, 0o755)  # bundles under it must be readable by the sandbox user
        host = sandboxes.make_host(Path(tmp) / "pool-data")
        results["machine"]["sandbox_python"] = str(host.python)
        results["machine"]["sandbox_user"] = "donjon's own" if host.uid is None else host.uid
        report.print_header(results["machine"], "quick" if args.quick else "full")
        try:
            results["node"] = node_phase(Path(tmp), host, plan, args.profile)
            results["sandbox"] = sandbox_phase(Path(results["node"]["deployed_bundle"]), host, plan)
        finally:
            sandboxes.forget_host(host)
        log(f"scale: {plan.scale_functions} functions deployed vs {scale.SMALL}")
        results["scale"] = scale.run(Path(tmp), plan.scale_functions, plan.load_s)
        log(f"audit: {plan.audit_verify:,} records for verify")
        results["audit"] = audit_phase.run(
            Path(tmp) / "audit",
            plan.audit_verify,
            plan.audit_concurrent,
            plan.audit_sync,
            plan.audit_waiters,
            sandboxes.run_loop,
        )
    results["machine"]["busy_after"] = cpu_busy()
    results["seconds"] = time.perf_counter() - started
    report.print_tables(results)
    for summary in results["node"].get("profiles", []):
        print()
        print(summary)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
