"""Instructions the gateway executes per warm request, counted by callgrind (issue 14, point 1).

Wall-clock and even CPU-time figures move with the load of a shared machine; the
number of instructions a process executes for a request does not. This starts
`donjon serve` through `gateway_stub.py` (the audit writer and the sandbox set
aside, as `gateway_cpu.py load` does: the monitor and the metrics still see every
call) under `valgrind --tool=callgrind` with collection off, deploys the bench's
warm function, warms up, then counts:

- `load`: the instructions of N invoke requests (HTTPS, a keyed caller, the input
  schema, every control) sent on a few keep-alive connections, and
- `idle`: the instructions of an idle window as long as the load window (the
  loop's timers, uvicorn's ticks), subtracted from it.

    python bench/gateway_instr.py [--python PY] [--requests 2000] [--connections 8]
        [--deployed 1] [--starlette] [--json FILE]

With `--deployed N`, N - 1 more functions (the same bundle under other names) are
deployed before the count, so the figure can be compared at 10 and 50 deployed
(issue 14 target 5: the warm path must not grow with the functions deployed).

With `--starlette`, bare Starlette over HTTPS (`baselines.py`) is counted the same
way after it, and the ratio printed.

Pass another tree's interpreter (`--python /work/other/.venv/bin/python`) to count
that tree: the stub and this script are imported from the tree they run in. The
figure is per request, whole process (the loop thread and any other); callgrind
serialises threads, so it is the count, not the time. For measurement only.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


async def _fixed_count(
    url: str, body: bytes, headers: dict[str, str], cafile: str, n: int, k: int
) -> int:
    """Send `n` requests over `k` keep-alive connections; the count of non-2xx answers."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    tls = ssl.create_default_context(cafile=cafile)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    payload = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    left = [n]
    bad = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        try:
            while left[0] > 0:
                left[0] -= 1
                writer.write(payload)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                bad[0] += status >= 300
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(k)))
    return bad[0]


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _instructions(out_dir: Path, pid: int, part: int) -> int:
    text = (out_dir / f"callgrind.out.{pid}.{part}").read_bytes()
    match = _TOTALS.search(text)
    if match is None:
        raise RuntimeError(f"no totals in callgrind dump {part}")
    return int(match.group(1))


def _valgrind(out_dir: Path, argv: list[str]) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        *argv,
    ]


def _wait_ready(url: str, tls: ssl.SSLContext, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 600
    while True:
        try:
            httpx.get(url, verify=tls, timeout=5)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server did not start: see {log}") from None
            time.sleep(0.5)


def _count(
    proc: subprocess.Popen[bytes],
    out_dir: Path,
    args: tuple[str, bytes, dict[str, str], str],
    n: int,
    k: int,
    warmup: int,
) -> dict[str, Any]:
    """Warm up, then count `n` requests and an idle window as long (see the docstring)."""
    bad = asyncio.run(_fixed_count(*args, warmup, k))
    _control(proc.pid, "-i", "on")
    started = time.monotonic()
    bad += asyncio.run(_fixed_count(*args, n, k))
    seconds = time.monotonic() - started
    _control(proc.pid, "-d", "load")  # dump 1: the load window (counters reset)
    time.sleep(seconds)
    _control(proc.pid, "-d", "idle")  # dump 2: an idle window as long
    _control(proc.pid, "-i", "off")
    load, idle = _instructions(out_dir, proc.pid, 1), _instructions(out_dir, proc.pid, 2)
    return {
        "requests": n,
        "connections": k,
        "errors": bad,
        "seconds": seconds,
        "load_ir": load,
        "idle_ir": idle,
        "ir_per_request": (load - idle) / n,
        "dumps": str(out_dir),
    }


def measure_gateway(
    python: str, requests: int, connections: int, warmup: int, deployed: int = 1
) -> dict[str, Any]:
    """The stubbed node (`gateway_stub.py`) under callgrind, run by `python`, with
    `deployed` functions deployed (the one called among them)."""
    import sandboxes
    from gateway_cpu import _bench_key, start_stub

    def serve(tmp: Path, port: int) -> list[str]:
        # This tree's stub, whichever tree `python` imports Donjon from (it patches by
        # name). valgrind cannot run seccomp(2) or Landlock's calls, so the node's probe
        # of the sandbox would fail under it; the stub never starts a sandbox for the
        # bench's calls.
        stub = [str(HERE / "gateway_stub.py"), "--under-valgrind", "serve", "--port", str(port)]
        return _valgrind(tmp, [python, *stub, "--unsafe-fewer-controls"])

    node, tmp = start_stub(python, "gwinstr", serve)
    url, proc = node.url, node.proc
    try:
        _wait_ready(url + "/healthz", node.tls, proc, tmp / "serve.log")
        node.deploy(sandboxes.write_bundle(tmp / "fn", "bench-warm", "warm"))
        for i in range(1, deployed):
            node.deploy(sandboxes.write_bundle(tmp / "fn", f"bench-other-{i:04d}", "warm"))
        key = _bench_key(node)
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        invoke = url + "/v1/functions/bench-warm/invoke"
        args = (invoke, b'{"name":"x"}', headers, node.cert)
        return {"deployed": deployed, **_count(proc, tmp, args, requests, connections, warmup)}
    finally:
        node.stop()


def measure_starlette(python: str, requests: int, connections: int, warmup: int) -> dict[str, Any]:
    """Bare Starlette over HTTPS (`baselines.py`) under callgrind, with a fresh certificate."""
    from donjon.gateway.tls import create_self_signed
    from harness import free_port

    tmp = Path(tempfile.mkdtemp(prefix="gwinstr-base"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    create_self_signed(cert, key)  # the kind of pair a node makes (ECDSA P-256)
    port = free_port()
    argv = [python, str(HERE / "baselines.py"), "starlette", str(port), str(cert), str(key)]
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_valgrind(tmp, argv), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"https://127.0.0.1:{port}/v1/functions/bench-warm/invoke"
        _wait_ready(url, ssl.create_default_context(cafile=str(cert)), proc, log_path)
        headers = {"content-type": "application/json", "authorization": "Bearer x"}
        args = (url, b'{"name":"x"}', headers, str(cert))
        return _count(proc, tmp, args, requests, connections, warmup)
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--deployed", type=int, default=1, help="functions deployed")
    parser.add_argument(
        "--starlette", action="store_true", help="bare Starlette too, and the ratio"
    )
    parser.add_argument("--json", help="write every raw figure here")
    args = parser.parse_args()
    gateway: Callable[[str, int, int, int], dict[str, Any]] = functools.partial(
        measure_gateway, deployed=args.deployed
    )
    measured = [(f"gateway, {args.deployed} deployed (audit, sandbox aside)", gateway)]
    if args.starlette:
        measured.append(("bare Starlette, HTTPS", measure_starlette))
    results = {}
    for name, measure in measured:
        result = results[name] = measure(args.python, args.requests, args.connections, args.warmup)
        print(
            f"{name:40s} {result['ir_per_request'] / 1e6:7.3f} M instructions per request "
            f"({result['requests']} requests, {result['errors']} not 2xx; idle window "
            f"{result['idle_ir'] / 1e6:.1f} M of {result['load_ir'] / 1e6:.1f} M)",
            flush=True,
        )
    if len(results) == 2:
        gateway, bare = (r["ir_per_request"] for r in results.values())
        print(f"ratio: {gateway / bare:.2f}x bare Starlette's instructions per request")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
