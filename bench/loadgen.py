"""HTTP load: closed-loop (`wrk` when it is installed, else a small asyncio client)
and open-loop (`open_loop`: the asyncio client at a fixed request rate).

Both send the same request (POST, JSON body, bearer header) on N keep-alive
connections for a fixed time and report one dict: requests, seconds,
requests/s, p50/p99 latency (ms) and errors. The bench installs nothing: wrk
comes from Debian's `wrk` package if someone installed it.

Run as a script, this module is the Python client (a separate process, like
wrk, so the client never shares a GIL with anything it measures):

    python bench/loadgen.py URL --connections 32 --seconds 5 [--cafile CERT]
        [--header 'name: value']... [--body JSON] [--rate REQ_PER_S]

With `--rate` it is open-loop: request i is due at start + i/rate, whatever the
server does, sent on the first of `connections` keep-alive connections that is
free (bounded: rate x seconds requests, a connection each at most; on loopback
spread over 127.0.0.1, .2, ... `PER_SOURCE` each, as many clients); its latency
counts from when it was due, so time spent waiting for a free connection is the
server's too (no coordinated omission). The result splits the answers by status:
accepted (2xx), shed (503, 429) and the rest, with p50/p99 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    """What every connection sends, again and again."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    cafile: str | None = None


def client_name() -> str:
    return "wrk" if shutil.which("wrk") else "python-asyncio"


def run(req: Request, connections: int, seconds: float) -> dict[str, Any]:
    """Load `req.url` for `seconds`; wrk if present, else the Python client."""
    if shutil.which("wrk"):
        return _run_wrk(req, connections, seconds)
    return _run_python(req, connections, seconds)


# -- wrk ---------------------------------------------------------------------------

_LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _run_wrk(req: Request, connections: int, seconds: float) -> dict[str, Any]:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(req.body)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in req.headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n" + _LUA_DONE)
        script = f.name
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                script,
                req.url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        Path(script).unlink()
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            raw = json.loads(line.removeprefix("BENCHJSON "))
            secs = raw["duration_us"] / 1e6
            return {
                "requests": raw["requests"],
                "seconds": secs,
                "rps": raw["requests"] / secs if secs else 0.0,
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "errors": raw["status_errors"] + raw["socket_errors"],
            }
    raise RuntimeError(f"wrk gave no result: {done.stdout[-500:]} {done.stderr[-500:]}")


#: Open-loop connections per loopback source address (the node allows 64 per client).
PER_SOURCE = 48


def open_loop(req: Request, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    """Offer `rate` requests a second for `seconds` on up to `connections` connections."""
    return _run_python(req, connections, seconds, rate)


def _run_python(
    req: Request, connections: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        req.url,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        "--body",
        req.body.decode(),
    ]
    for k, v in req.headers.items():
        argv += ["--header", f"{k}: {v}"]
    if req.cafile:
        argv += ["--cafile", req.cafile]
    if rate is not None:
        argv += ["--rate", str(rate)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the Python load client failed: {done.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- the Python client --------------------------------------------------------------


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


async def _connection(
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    payload: bytes,
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    except OSError:
        errors.append(1)
        return
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(payload)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status >= 400:
                errors.append(1)
    except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
        errors.append(1)
    finally:
        writer.close()


def _target(req: Request) -> tuple[str, int, ssl.SSLContext | None, bytes]:
    """Where to connect, with which TLS context, and the request's bytes."""
    url = urlsplit(req.url)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
    tls = ssl.create_default_context(cafile=req.cafile) if url.scheme == "https" else None
    head = [
        f"POST {url.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(req.body)}",
    ]
    head += [f"{k}: {v}" for k, v in req.headers.items()]
    payload = ("\r\n".join(head) + "\r\n\r\n").encode() + req.body
    return host, port, tls, payload


async def _load(req: Request, connections: int, seconds: float) -> dict[str, Any]:
    host, port, tls, payload = _target(req)
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(host, port, tls, payload, start + seconds, latencies, errors)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "errors": len(errors),
    }


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> tuple[int, bytes]:
    """One request on an open connection; its status and body."""
    writer.write(payload)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def _stats(values: list[float]) -> dict[str, Any]:
    values = sorted(values)
    return {
        "count": len(values),
        "p50_ms": _percentile(values, 50) * 1000,
        "p99_ms": _percentile(values, 99) * 1000,
    }


async def _open_loop(req: Request, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    host, port, tls, payload = _target(req)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    sources = [f"127.0.0.{1 + i // PER_SOURCE}" for i in range(connections)]

    async def connect(i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        local = (sources[i], 0) if host.startswith("127.") else None
        return await asyncio.open_connection(host, port, ssl=tls, local_addr=local)

    for i in range(connections):
        idle.put_nowait(await connect(i))
    by_status: dict[str, list[float]] = {}
    # Of the accepted: send to answer (the node's part), and due to send (a free connection).
    wire: list[float] = []
    queued: list[float] = []
    samples: dict[str, str] = {}  # the first body of each status
    kinds: dict[str, int] = {}
    errors: list[int] = []

    async def one(due: float) -> None:
        reader, writer = await idle.get()
        sent = time.perf_counter()
        try:
            status, body = await _exchange(reader, writer, payload)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            errors.append(1)
            writer.close()
            with contextlib.suppress(OSError):  # replaced: the pool keeps its size
                idle.put_nowait(await connect(0))
            return
        answered_at = time.perf_counter()
        by_status.setdefault(str(status), []).append(answered_at - due)
        if 200 <= status < 300:
            wire.append(answered_at - sent)
            queued.append(sent - due)
        samples.setdefault(str(status), body[:300].decode(errors="replace"))
        if status >= 400:  # which refusal: the problem's detail, its first 40 characters
            detail = body.decode(errors="replace").partition('"detail": "')[2][:40]
            kind = f"{status} " + re.sub(r"[0-9]+", "N", detail)
            kinds[kind] = kinds.get(kind, 0) + 1
        idle.put_nowait((reader, writer))

    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    offered_s = time.perf_counter() - start
    await asyncio.wait(tasks, timeout=60)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait()[1].close()

    ok = [v for s, vs in by_status.items() if s.startswith("2") for v in vs]
    answered = sum(len(v) for v in by_status.values())
    return {
        "offered": total,
        "offered_rps": total / max(offered_s, 1e-9),
        "seconds": elapsed,
        "answered": answered,
        "unanswered": total - answered - len(errors),
        "errors": len(errors),
        "statuses": {s: len(v) for s, v in sorted(by_status.items())},
        "accepted": _stats(ok),
        "accepted_wire": _stats(wire),
        "accepted_queued": _stats(queued),
        "shed": _stats([v for s, vs in by_status.items() if s in ("503", "429") for v in vs]),
        "accepted_rps": len(ok) / elapsed,
        "samples": samples,
        "refusals": kinds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--body", default="{}")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--cafile")
    parser.add_argument("--rate", type=float, help="open-loop: requests offered per second")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    req = Request(args.url, args.body.encode(), headers, args.cafile)
    work = (
        _open_loop(req, args.rate, args.seconds, args.connections)
        if args.rate
        else _load(req, args.connections, args.seconds)
    )
    try:
        import uvloop

        result = uvloop.run(work)
    except ImportError:
        result = asyncio.run(work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
