"""The noisy neighbour (issue 15, point 7): one principal floods, another keeps being served.

    .venv/bin/python bench/noisy.py [--quick] [--flood-rate 2000] [--flood-close]
        [--profile DIR] [--env DONJON_X=V]...

On a node of its own (loopback only), two warm functions with a shared rate limit
(`limits.rate`, FUNCTION_RATE each): `noisy-shared`, which the flooder floods, and
`noisy-other`. Two keys: the flooder's, with a low rate of its own (`--rate
FLOOD_KEY_RATE --burst FLOOD_KEY_BURST`, as `donjon key create` sets it), and the
victim's (the server's default limits). The steps:

1. idle: the victim alone, VICTIM_RATE calls a second to each function (open loop,
   bench/noisy_victim.py from 127.0.0.2) for `seconds`: its p50/p99;
2. flood: the flooder, wrk from 127.0.0.1 on FLOOD_CONNECTIONS keep-alive connections
   at `--flood-rate` requests a second in all (each connection waits its share
   between requests: `delay()` in wrk's script; 0: as fast as the node answers),
   bounded in time and in count (rate x seconds x 1.5, then wrk stops), far past
   its key's rate; meanwhile the victim again, as in step 1;
3. idle again: the victim alone once more (the shared machine's drift, for the reader).

The report: the victim's success rate in the flood (per function and together),
its p50/p99 idle and in the flood and their ratio (the target: at least 99% served,
p99 within 2x of the idle p99); the flooder's answers by status; the node's RSS
(before, peak, after) and CPU seconds (the node's whole tree), the clients' own
CPU seconds (wrk and the victim), and the machine's CPU use over the flood (all
cores, every process: the machine is shared), so a reader can tell a saturated
host from a slow node. Without key limits (a node before issue 15) the flooder's
key is made without them and the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import sandboxes
from noisy_flood import flood, machine_cpu
from overload import PeakRss, rss

BODY = b'{"name": "bench"}'
SHARED, OTHER = "noisy-shared", "noisy-other"
FUNCTION_RATE = "100/second"
FLOOD_KEY_RATE, FLOOD_KEY_BURST = "50/second", 100
VICTIM_RATE = 20.0
FLOOD_CONNECTIONS = 48
VICTIM_SOURCE = "127.0.0.2"


def _deploy(node: Any, tmp: Path, name: str) -> None:
    d = sandboxes.write_bundle(tmp / "fns", name, "warm")
    manifest = (d / "donjon.yaml").read_text()
    limits = f'limits: {{rate: "{FUNCTION_RATE}", concurrency: 8}}'
    (d / "donjon.yaml").write_text(manifest.replace("limits: {concurrency: 8}", limits))
    node.deploy(d)


def _key(node: Any, name: str, functions: list[str], limits: dict[str, Any]) -> tuple[str, bool]:
    """A key for `functions`, with `limits` if the node takes them: (key, limits taken)."""
    with node.client() as c:
        body = {"name": name, "role": "invoker", "functions": functions}
        r = c.post("/v1/keys", json={**body, **limits})
        if r.status_code in (400, 422) and limits:
            r = c.post("/v1/keys", json=body)
            taken = False
        else:
            taken = True
    if r.status_code != 201:
        raise RuntimeError(f"key {name}: {r.status_code} {r.text[:300]}")
    return str(r.json()["key"]), taken


def _victim(node: Any, key: str, seconds: float) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH / "noisy_victim.py")]
    argv += [f"{node.url}/v1/functions/{f}/invoke" for f in (SHARED, OTHER)]
    argv += ["--rate", str(VICTIM_RATE), "--seconds", str(seconds), "--source", VICTIM_SOURCE]
    argv += ["--cafile", node.cert, "--body", BODY.decode()]
    argv += ["--header", "content-type: application/json"]
    argv += ["--header", f"authorization: Bearer {key}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the victim's client failed: {done.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _own_cpu(pid: int) -> float:
    """CPU seconds of one process alone (the gateway: its event loop and threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    node: Any,
    tmp: Path,
    seconds: float,
    flood_rate: float,
    profile: Path | None = None,
    close: bool = False,
) -> dict[str, Any]:
    for name in (SHARED, OTHER):
        _deploy(node, tmp, name)
    limits = {"rate": FLOOD_KEY_RATE, "burst": FLOOD_KEY_BURST}
    flooder, key_limits = _key(node, "flooder", [SHARED], limits)
    victim, _ = _key(node, "victim", [SHARED, OTHER], {})
    _victim(node, victim, 1.0)  # warm up: both functions' sandboxes started
    idle = _victim(node, victim, seconds)
    pid = node.proc.pid
    gateway0, node_cpu0, clients0, machine0, before = (
        _own_cpu(pid),
        sandboxes.tree_cpu(pid),
        _children_cpu(),
        machine_cpu(),
        rss(pid),
    )
    url = f"{node.url}/v1/functions/{SHARED}/invoke"
    headers = {"content-type": "application/json", "authorization": f"Bearer {flooder}"}
    if close:  # a new connection (a TLS handshake) for every request of the flood
        headers["connection"] = "close"
    with PeakRss(pid) as peak:
        running = flood(url, BODY, headers, FLOOD_CONNECTIONS, flood_rate, seconds + 2.0)
        time.sleep(1.0)  # the flood is on before the victim's first call
        during = _victim(node, victim, seconds)
        flooded = running.result()
    machine1 = machine_cpu()
    node_cpu, clients = sandboxes.tree_cpu(pid) - node_cpu0, _children_cpu() - clients0
    gateway = _own_cpu(pid) - gateway0
    time.sleep(2)
    idle_after = _victim(node, victim, seconds)  # the machine's own drift, for the reader
    busy = (machine1[0] - machine0[0]) / max(1e-9, machine1[1] - machine0[1])
    out = {
        "seconds": seconds,
        "function_rate": FUNCTION_RATE,
        "flooder_key": {**limits, "taken": key_limits},
        "victim_rate_per_function": VICTIM_RATE,
        "flood_rate_offered": flood_rate,
        "flood_new_connection_each": close,
        "idle": _without_samples(idle),
        "flood": _without_samples(during),
        "idle_after": _without_samples(idle_after),
        "flooder": flooded,
        "p99_ratio": during["all"]["p99_ms"] / idle["all"]["p99_ms"],
        "p50_ratio": during["all"]["p50_ms"] / idle["all"]["p50_ms"],
        "node_cpu_s": node_cpu,
        "gateway_cpu_s": gateway,
        "gateway_cpu_per_request_ms": 1000
        * gateway
        / (flooded["requests"] + during["all"]["sent"]),
        "clients_cpu_s": clients,
        "machine_busy": busy,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "rss_before": before,
        "rss_peak": max(peak.peak, before),
        "rss_after": rss(pid),
    }
    _report(out)
    if profile is not None:
        _profile(node.proc.pid, url, headers, flood_rate, seconds, profile)
    return out


def _profile(
    pid: int, url: str, headers: dict[str, str], rate: float, seconds: float, out: Path
) -> None:
    """The flood once more, unmeasured, with py-spy sampling the gateway: where its CPU goes."""
    import profiling

    out.mkdir(parents=True, exist_ok=True)
    path = out / "noisy-gateway.txt"
    running = flood(url, BODY, headers, FLOOD_CONNECTIONS, rate, seconds + 1.0)
    time.sleep(0.5)
    spy = profiling.record(pid, seconds - 1.0, path)
    if spy is None:
        sys.stderr.write("  profile: py-spy not found (scripts/setup-bench.sh installs it)\n")
    else:
        spy.wait(seconds + 30)
    running.result()
    if path.exists():
        sys.stderr.write(profiling.summary(path, top=25) + "\n")


def _without_samples(victim: dict[str, Any]) -> dict[str, Any]:
    def trim(s: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k != "latencies_ms"}

    return {
        "seconds": victim["seconds"],
        "all": trim(victim["all"]),
        "targets": {n: trim(s) for n, s in victim["targets"].items()},
    }


def _report(out: dict[str, Any]) -> None:
    idle, flood_, f = out["idle"]["all"], out["flood"]["all"], out["flooder"]
    lines = [
        f"noisy neighbour: flooder key {out['flooder_key']}, functions' rate {FUNCTION_RATE}",
        f"  victim idle:  p50 {idle['p50_ms']:.2f} ms, p99 {idle['p99_ms']:.2f} ms, "
        f"{idle['ok']}/{idle['sent']} ok",
        f"  victim flood: p50 {flood_['p50_ms']:.2f} ms, p99 {flood_['p99_ms']:.2f} ms, "
        f"{flood_['ok']}/{flood_['sent']} ok ({flood_['success_rate']:.1%}) "
        f"statuses {flood_['statuses']} errors {flood_['errors']}",
    ]
    after = out["idle_after"]["all"]
    lines.append(
        f"  victim idle again after the flood: p50 {after['p50_ms']:.2f} ms, "
        f"p99 {after['p99_ms']:.2f} ms, {after['ok']}/{after['sent']} ok"
    )
    for name, t in out["flood"]["targets"].items():
        lines.append(
            f"    {name}: {t['ok']}/{t['sent']} ok, p50 {t['p50_ms']:.2f} ms, "
            f"p99 {t['p99_ms']:.2f} ms, statuses {t['statuses']}"
        )
    lines += [
        f"  ratio flood/idle: p50 {out['p50_ratio']:.2f}x, p99 {out['p99_ratio']:.2f}x "
        f"(target: p99 <= 2x, success >= 99%: "
        f"{'met' if out['p99_ratio'] <= 2 and flood_['success_rate'] >= 0.99 else 'NOT met'})",
        f"  flooder{' (a new connection each request)' if out['flood_new_connection_each'] else ''}"
        f": {f['requests']} answered in {f['seconds']:.1f} s "
        f"({f['requests'] / max(f['seconds'], 1e-9):.0f}/s, offered "
        f"{out['flood_rate_offered']:.0f}/s on {f['connections']} connections): "
        f"statuses {f['statuses']}, "
        f"socket errors {f['socket_errors']}",
        *(f"    {status}: {body[:160]}" for status, body in f["samples"].items()),
        f"  CPU over the flood: gateway {out['gateway_cpu_s']:.1f} s "
        f"({out['gateway_cpu_per_request_ms']:.2f} ms a request), "
        f"node with sandboxes {out['node_cpu_s']:.1f} s, "
        f"clients {out['clients_cpu_s']:.1f} s, "
        f"machine {out['machine_busy']:.0%} busy of {out['cores']} cores "
        f"(load average {out['load_average']:.1f})",
        f"  node RSS {out['rss_before'] / 2**20:.0f} -> {out['rss_peak'] / 2**20:.0f} -> "
        f"{out['rss_after'] / 2**20:.0f} MiB",
    ]
    sys.stderr.write("\n".join(lines) + "\n")


def main() -> None:
    from harness import start_node

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--flood-rate", type=float, default=2000.0, help="0: closed loop")
    parser.add_argument("--env", action="append", default=[], help="DONJON_X=V for the node")
    parser.add_argument("--profile", type=Path, help="then profile the gateway in a flood (py-spy)")
    parser.add_argument(
        "--flood-close", action="store_true", help="the flooder connects anew for each request"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the flooder: scripts/setup-bench.sh installs it")
    extra = dict(e.split("=", 1) for e in args.env)
    with tempfile.TemporaryDirectory(prefix="donjon-noisy-") as tmp:
        os.chmod(tmp, 0o755)
        node = start_node(Path(tmp) / "node", extra)
        try:
            seconds = 5.0 if args.quick else 10.0
            out = run(node, Path(tmp), seconds, args.flood_rate, args.profile, args.flood_close)
        finally:
            node.stop()
            shutil.rmtree(sandboxes.node_staging(node.data_dir), ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
