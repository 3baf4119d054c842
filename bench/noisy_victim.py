"""The noisy-neighbour bench's victim: a modest open-loop load on two functions at once.

    python bench/noisy_victim.py URL_A URL_B --rate 20 --seconds 5 --source 127.0.0.2
        [--connections 2] [--cafile CERT] [--header 'name: value']... [--body JSON]

A separate process (like wrk for the flooder), so that its own event loop never
shares a GIL with the flooder's client or the node. Each URL gets `rate` requests
a second for `seconds` (bounded: rate x seconds each), request i due at
start + i/rate, sent on the first of its `connections` keep-alive connections that
is free, from the loopback address `source` (a client of its own: the flooder's
connections do not count against its per-address cap). Latency counts from when a
request was due, so time spent waiting for a free connection is the node's too (no
coordinated omission). Prints one JSON object: per URL and together, the statuses,
the successes (2xx), p50/p99 of every answer, and the transport errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import _exchange, _percentile

#: The longest the victim waits for its last answers after the last one was due.
DRAIN_S = 60.0


def _payload(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return host, port, ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Target:
    """One URL's connections, and what its answers were."""

    def __init__(self, url: str, payload: bytes) -> None:
        self.url, self.payload = url, payload
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.sent = 0

    def summary(self) -> dict[str, Any]:
        values = sorted(self.latencies)
        ok = sum(n for s, n in self.statuses.items() if s.startswith("2"))
        return {
            "sent": self.sent,
            "ok": ok,
            "success_rate": ok / self.sent if self.sent else float("nan"),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors,
            "p50_ms": _percentile(values, 50) * 1000,
            "p99_ms": _percentile(values, 99) * 1000,
            "latencies_ms": [round(v * 1000, 3) for v in values],
        }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    headers = dict(h.split(": ", 1) for h in args.header)
    tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    targets: list[Target] = []
    for url in args.urls:
        host, port, payload = _payload(url, args.body.encode(), headers)
        target = Target(url, payload)
        for _ in range(args.connections):
            target.idle.put_nowait(
                await asyncio.open_connection(
                    host, port, ssl=tls, local_addr=(args.source, 0), server_hostname=host
                )
            )
        targets.append(target)

    async def one(target: Target, due: float) -> None:
        reader, writer = await target.idle.get()
        try:
            status, _ = await _exchange(reader, writer, target.payload)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            target.errors += 1
            writer.close()
            host, port, _ = _payload(target.url, b"", {})
            with contextlib.suppress(OSError):  # replaced: the pool keeps its size
                target.idle.put_nowait(
                    await asyncio.open_connection(
                        host, port, ssl=tls, local_addr=(args.source, 0), server_hostname=host
                    )
                )
            return
        target.latencies.append(time.perf_counter() - due)
        target.statuses[str(status)] = target.statuses.get(str(status), 0) + 1
        target.idle.put_nowait((reader, writer))

    total = int(args.rate * args.seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for target in targets:
            target.sent += 1
            tasks.append(asyncio.ensure_future(one(target, due)))
    await asyncio.wait(tasks, timeout=DRAIN_S)
    elapsed = time.perf_counter() - start
    for target in targets:
        while not target.idle.empty():
            target.idle.get_nowait()[1].close()
    merged = Target("all", b"")
    for target in targets:
        merged.sent += target.sent
        merged.errors += target.errors
        merged.latencies += target.latencies
        for s, n in target.statuses.items():
            merged.statuses[s] = merged.statuses.get(s, 0) + n
    return {
        "seconds": elapsed,
        "targets": {t.url.rsplit("/", 2)[-2]: t.summary() for t in targets},
        "all": merged.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second per URL")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=2, help="per URL")
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--cafile")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default="{}")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(_run(args))
    except ImportError:
        result = asyncio.run(_run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
