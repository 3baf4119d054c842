"""The gateway's own CPU per warm request, piece by piece (issue 14, point 1's gateway side).

Two measurements, both runnable against any installed tree (pass that tree's
interpreter), so a change is measured against main in the same sitting:

    python bench/gateway_cpu.py pieces                 # per-call microbenchmarks
    python bench/gateway_cpu.py load --python PY [--rounds 3 --seconds 5]

`pieces` times, on the node's own objects, what a warm call does in the
gateway besides the audit append and the sandbox round trip: the monitor's
detectors per call record, the input schema check, the call's meta, the
metrics, the request id, the caller's address, the secrets' redaction set-up.

`load` starts `donjon serve` through `gateway_stub.py`, which sets aside the
audit writer (a record is handed to the listeners on the loop, so the monitor
and the metrics still run) and the sandbox (the call returns a fixed result),
loads it with the Python client (32 connections) and prints the server
process's CPU (user + sys from /proc) per request. For measurement only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def _best(fn: Callable[[], object], number: int = 5000, repeat: int = 5) -> float:
    """Microseconds per call, the best of `repeat` runs (CPU time, not wall)."""
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def _records(n: int) -> list[Any]:
    from donjon.audit.log import AuditEvent, CommittedRecord

    rnd = random.Random(1)
    out = []
    for i in range(n):
        detail = {
            "request_id": "x",
            "duration_ms": 0.3 + rnd.random() * 0.2,
            "trigger": "invoke",
            "memory_mb": 64,
            "client": "127.0.0.1",
        }
        outcome = "ok" if rnd.random() > 0.01 else "FunctionFailed"
        event = AuditEvent("key:k1", "function.invoke", "bench-warm@1", outcome, detail)
        out.append(CommittedRecord(i + 1, 1_000_000.0 + i / 500, event))
    return out


def detectors_per_record(n: int = 20_000) -> dict[str, float]:
    """Microseconds of CPU per call record: every detector in turn, as the engine feeds them
    (with the engine's own routing by action where the tree has it)."""
    from donjon.config import MonitorSettings
    from donjon.monitor.service import default_detectors

    records = _records(n)
    detectors = default_detectors(MonitorSettings())
    warm = n // 5
    for record in records[:warm]:
        for d in detectors:
            d.observe(record, record.ts)
    action = "function.invoke"
    fed = [d for d in detectors if action in getattr(d, "actions", (action,))]
    start = time.process_time()
    for record in records[warm:]:
        for d in fed:
            d.observe(record, record.ts)
    total = (time.process_time() - start) / (n - warm) * 1e6
    return {"detectors, per call record (all)": total}


def pieces() -> dict[str, float]:
    from starlette.requests import Request

    from donjon.gateway.access import client_address
    from donjon.gateway.invoke import _meta
    from donjon.manifest.input_validator import input_validator
    from donjon.obs import Metrics, log_secrets, mint_request_id
    from donjon.vault.redact import Redactor

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 100}},
        "additionalProperties": False,
    }
    validator = input_validator(schema)
    event = {"name": "x"}
    deployed: Any = SimpleNamespace(
        name="bench-warm", record=SimpleNamespace(version=1), manifest=SimpleNamespace(memory_mb=64)
    )
    principal: Any = SimpleNamespace(label="key:0123456789abcdef")
    metrics = Metrics()
    request = Request({"type": "http", "client": ("127.0.0.1", 5555), "headers": []})

    def schema_check() -> None:
        sorted(validator.iter_errors(event), key=lambda e: list(e.path))

    def redaction() -> None:
        with log_secrets(Redactor({})):
            pass

    out = {
        "schema check (bench schema, valid event)": _best(schema_check),
        "call meta (json)": _best(lambda: _meta(deployed, "0123456789abcdef", principal, {}, 5.0)),
        "metrics.invocation": _best(lambda: metrics.invocation("bench-warm", "ok", 0.001)),
        "request id": _best(mint_request_id),
        "client address": _best(lambda: client_address(request)),
        "redactor + log binding (no secrets)": _best(redaction),
    }
    out.update(limits_per_call())
    out.update(detectors_per_record())
    return out


def _done(coro: Any) -> Any:
    """Run a coroutine that never suspends (the memory limiters') to its end, loop-free."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine suspended")


def limits_per_call() -> dict[str, float]:
    """Microseconds per call of issue 15's limits on the memory backends: what a tree
    before them paid (one function bucket) and what a keyed call pays now."""
    from donjon.ratelimit import BucketKey, MemoryRateLimiter

    limiter = MemoryRateLimiter()
    key = BucketKey(function="bench-warm")
    out = {
        "one bucket take (the function's; before)": _best(
            lambda: _done(limiter.take(key, 1_000_000_000, 1.0))
        )
    }
    try:
        from donjon.config import Settings
        from donjon.gateway.rate_buckets import take_rate_buckets
        from donjon.gateway.slots import hold_slots
        from donjon.identity import Policy, Principal
        from donjon.manifest import parse_manifest
        from donjon.ratelimit import MemoryConcurrencyLimiter
        from donjon.ratelimit.rates import CallerLimits
    except ImportError:  # a tree before issue 15
        return out
    manifest = parse_manifest(
        "name: bench-warm\nhandler: main.handler\nlimits: {rate: 999999999/second}\n"
    )
    node: Any = SimpleNamespace(
        limiter=MemoryRateLimiter(),
        policy=Policy(),
        settings=Settings(data_dir=Path("/nonexistent"), url="https://127.0.0.1:1", api_key=None),
        slots=MemoryConcurrencyLimiter(),
        node_slots=MemoryConcurrencyLimiter(),
    )
    deployed: Any = SimpleNamespace(
        name="bench-warm",
        record=SimpleNamespace(name="bench-warm", version=1),
        manifest=manifest,
        rate=manifest.limits.parsed_rate,
    )
    principal = Principal(  # the bench key's own limits: never refused (docs/limits.md)
        id="0123456789abcdef",
        name="bench",
        role="invoker",
        limits=CallerLimits(rate="999999999/second", concurrency=100_000),
    )

    def buckets() -> None:
        _done(take_rate_buckets(node, deployed, principal, "r", "invoke", "127.0.0.1"))

    def slots() -> None:
        _done(_done(hold_slots(node, deployed, principal, "r", "invoke")).release())

    out["rate buckets of a keyed call (3 takes)"] = _best(buckets)
    out["concurrency slots, hold + release (2)"] = _best(slots)
    return out


def load(python: str, rounds: int, seconds: float) -> dict[str, list[float]]:
    """CPU per request (ms), one figure per round: the stubbed server, then bare Starlette
    over HTTPS (bench/baselines.py, the node's certificate) with the same client."""
    import httpx
    import loadgen
    import sandboxes

    from harness import free_port

    node, tmp = start_stub(python, "gwcpu")
    url, data = node.url, node.data_dir
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", verify=node.tls, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        node.deploy(sandboxes.write_bundle(tmp / "fn", "bench-warm", "warm"))
        key = _bench_key(node)
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        request = loadgen.Request(
            url + "/v1/functions/bench-warm/invoke", b'{"name":"x"}', headers, node.cert
        )
        figures = {
            "gateway (audit and sandbox set aside)": _rounds(
                request, node.proc.pid, rounds, seconds
            )
        }
        base_port = free_port()
        tls = (node.cert, str(data / "tls" / "key.pem"))
        base = subprocess.Popen(
            [sys.executable, str(HERE / "baselines.py"), "starlette", str(base_port), *tls],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base_url = f"https://127.0.0.1:{base_port}/v1/functions/bench-warm/invoke"
            for _ in range(300):
                try:
                    httpx.get(base_url, verify=node.tls, timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            baseline = loadgen.Request(base_url, request.body, headers, node.cert)
            figures["bare Starlette, HTTPS"] = _rounds(baseline, base.pid, rounds, seconds)
        finally:
            base.terminate()
            base.wait(10)
        return figures
    finally:
        node.stop()


def _rounds(request: Any, pid: int, rounds: int, seconds: float) -> list[float]:
    import loadgen

    loadgen.run(request, 32, 1.5)  # warm-up
    figures = []
    for _ in range(rounds):
        before = _cpu_ticks(pid)
        result = loadgen.run(request, 32, seconds)
        ticks = _cpu_ticks(pid) - before
        figures.append(ticks * 1000 / os.sysconf("SC_CLK_TCK") / max(1, result["requests"]))
    return figures


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


#: The bench's key gets limits of its own far above anything it can reach (issue 15's
#: per-principal buckets are measured, never hit); a tree before them takes none.
UNTHROTTLED = {"rate": "1000000/second", "burst": 1000000, "concurrency": 100000}


def start_stub(
    python: str,
    prefix: str,
    serve: Callable[[Path, int], list[str]] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Any, Path]:
    """A node initialised by `python` in a new temporary directory and served through
    `gateway_stub.py` (or `serve(tmp, port)`'s argv), with `env` added: its `LiveNode`
    (stopped by its `stop()`) and the directory, where `serve.log` is."""
    from harness import LiveNode, donjon_env, free_port

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    data = tmp / "node"
    data.mkdir()
    done = subprocess.run(
        [python, "-m", "donjon.cli", "init", "--json"],
        env=donjon_env(data),
        capture_output=True,
        text=True,
        check=True,
    )
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    argv = (
        serve(tmp, port)
        if serve is not None
        else [python, str(HERE / "gateway_stub.py"), "serve", "--port", str(port)]
    )
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed by node.stop()
    proc = subprocess.Popen(
        argv, env={**donjon_env(data, url), **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    return LiveNode(data, url, json.loads(done.stdout)["admin_key"], proc, log), tmp


def _bench_key(node: Any) -> str:
    try:
        return str(node.create_key("bench", "invoker", ["bench-warm"], UNTHROTTLED)["key"])
    except AssertionError:  # a node before issue 15 refuses the fields
        return str(node.create_key("bench", "invoker", ["bench-warm"])["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["pieces", "load"])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.what == "pieces":
        for name, us in pieces().items():
            print(f"{name:45s} {us:8.2f} us")
    else:
        for name, figures in load(args.python, args.rounds, args.seconds).items():
            print(f"{name:40s} CPU/request (ms): {' '.join(f'{f:.3f}' for f in figures)}")


if __name__ == "__main__":
    main()
