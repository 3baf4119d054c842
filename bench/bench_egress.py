"""One HTTPS request through the egress proxy beside the same request from the host, one run.

    .venv/bin/python bench/bench_egress.py [--quick] [--json FILE]

A local origin stands in for the internet (tests/egress_world.py: HTTPS on 127.0.0.2:443
with a CA of its own, a DNS server the proxy resolves `api.donjon.test` through), and a
real node (`donjon serve`) runs a function granted `api.donjon.test:443`. Measured, in
turn and in the same run, each request a new TCP connection and TLS handshake:

1. host: the request made directly from this process (socket, TLS with the origin's
   name, GET, read the reply): what the same request costs with no platform in the way;
2. in-sandbox: the request made by the function with urllib through HTTPS_PROXY
   (relay in the worker's network namespace, unix socket, the proxy's grant check,
   resolution, SNI check, dial), timed inside the function;
   (and the same request by hand: a socket to the relay, CONNECT, TLS, GET; with the
   time until the proxy answers the CONNECT: relay, token, grant check, resolution);
3. call with the request vs call without it (the same function answering at once),
   through the gateway, for `isolation: warm` and `isolation: invocation`: what
   making one egress request adds to a call end to end.

Medians and 90th percentiles are printed; nothing is asserted (STYLE.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

# Imported after sys.path names tests/ (E402): the egress tests' world, harness
from egress_realworld import build_world, deploy, function_source, node_settings
from egress_world import DOMAIN
from harness import LiveNode, start_node

API = f"api.{DOMAIN}"


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
    }


def host_request(address: str, ca: bytes) -> float:
    """One GET from this process: new connection, TLS with the origin's name, read it all."""
    context = ssl.create_default_context(cadata=ca.decode())
    started = time.perf_counter()
    with (
        socket.create_connection((address, 443), timeout=15) as raw,
        context.wrap_socket(raw, server_hostname=API) as tls,
    ):
        tls.sendall(f"GET /bench HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - started
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the origin answered {data[:80]!r}")
    return elapsed


def timed_call(node: LiveNode, name: str, event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    with node.client() as c:
        started = time.perf_counter()
        r = c.post(f"/v1/functions/{name}/invoke", content=json.dumps(event))
        elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"{name}: {r.status_code} {r.text[:500]}")
    result: dict[str, Any] = r.json()
    return elapsed, result


def measure(calls: int, work: Path) -> dict[str, Any]:
    with build_world(work / "world") as world:
        node = start_node(work / "node", node_settings(world))
        try:
            for isolation in ("warm", "invocation"):
                src = function_source(
                    world, work, "eg-attack", f"bench-egress-{isolation}", isolation=isolation
                )
                deploy(node, src)
            results: dict[str, Any] = {"calls": calls}
            request = {"op": "urllib", "url": f"https://{API}/bench"}
            for _ in range(5):  # warm-up: caches, the warm worker, the TLS session code paths
                host_request(world.address, world.ca.pem)
                for isolation in ("warm", "invocation"):
                    timed_call(node, f"bench-egress-{isolation}", request)
            tunnel = {"op": "connect", "target": f"{API}:443", "sni": API, "path": "/bench"}
            host: list[float] = []
            inside: dict[str, list[float]] = {"warm": [], "invocation": []}
            connect: dict[str, list[float]] = {"warm": [], "invocation": []}
            raw: dict[str, list[float]] = {"warm": [], "invocation": []}
            with_request: dict[str, list[float]] = {"warm": [], "invocation": []}
            without: dict[str, list[float]] = {"warm": [], "invocation": []}
            for _ in range(calls):  # interleaved, so load on the machine hits each the same
                host.append(host_request(world.address, world.ca.pem))
                for isolation in ("warm", "invocation"):
                    name = f"bench-egress-{isolation}"
                    elapsed, result = timed_call(node, name, request)
                    if result.get("status") != 200:
                        raise RuntimeError(f"{name}: the request failed: {result}")
                    with_request[isolation].append(elapsed)
                    inside[isolation].append(float(result["elapsed_s"]))
                    elapsed, _ = timed_call(node, name, {"op": "env"})
                    without[isolation].append(elapsed)
                    _, result = timed_call(node, name, tunnel)
                    if result.get("http_status") != 200:
                        raise RuntimeError(f"{name}: the tunnel failed: {result}")
                    connect[isolation].append(float(result["connect_s"]))
                    raw[isolation].append(float(result["elapsed_s"]))
            results["host_request"] = _summary(host)
            for isolation in ("warm", "invocation"):
                results[isolation] = {
                    "request_in_sandbox": _summary(inside[isolation]),
                    "raw_request_in_sandbox": _summary(raw[isolation]),
                    "connect_answered": _summary(connect[isolation]),
                    "call_with_request": _summary(with_request[isolation]),
                    "call_without_request": _summary(without[isolation]),
                }
            return results
        finally:
            node.stop()


def print_table(results: dict[str, Any]) -> None:
    host = results["host_request"]["median_ms"]
    print(f"one HTTPS request, {results['calls']} calls each, interleaved (median / p90 ms)")
    print(f"{'what':58} {'median':>8} {'p90':>8} {'vs host':>8}")

    def row(label: str, s: dict[str, float], ratio: bool = True) -> None:
        r = f"{s['median_ms'] / host:7.1f}x" if ratio else ""
        print(f"{label:58} {s['median_ms']:8.2f} {s['p90_ms']:8.2f} {r:>8}")

    row("request from the host, direct", results["host_request"])
    for isolation in ("warm", "invocation"):
        m = results[isolation]
        row(f"[{isolation}] request in the sandbox, through the proxy", m["request_in_sandbox"])
        row(f"[{isolation}]   the same by hand (socket, CONNECT, TLS)", m["raw_request_in_sandbox"])
        row(f"[{isolation}]   of which CONNECT answered 200", m["connect_answered"])
        row(f"[{isolation}] call making the request (gateway, end to end)", m["call_with_request"])
        row(f"[{isolation}] same call without the request", m["call_without_request"], False)
        added = m["call_with_request"]["median_ms"] - m["call_without_request"]["median_ms"]
        print(f"[{isolation}] the request adds {added:.2f} ms to a call (medians)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 calls instead of 200")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    calls = 30 if args.quick else 200
    with tempfile.TemporaryDirectory(prefix="donjon-bench-egress-") as tmp:
        results = measure(calls, Path(tmp))
    results["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
