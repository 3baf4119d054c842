"""The gateway's CPU per new TLS connection, let through and refused at accept (issue 14 point 6).

    .venv/bin/python bench/accept.py [--connections 300] [--rounds 3] [--env DONJON_X=V]...

On a node of its own (loopback only), the gateway process's CPU (user + sys from
/proc/PID/stat: the serve process alone, not the audit writer nor any sandbox)
is read around each of two phases, `--rounds` times:

1. let through: `connections` new TLS connections one after another, each from a
   loopback address of its own (so each has a full connect bucket), each one
   handshake, one GET /healthz, one close;
2. refused: 5 x `connections` new connections from one address whose burst is spent,
   each sending a real ClientHello and reading until the server speaks or closes.

It prints the CPU per connection of each phase, how many of phase 2 got no byte
back (refused before the handshake), and their ratio: phase 2 against phase 1 of
the same run. A node without the accept gate (main before it) answers every
ClientHello of phase 2 with a handshake, so its phase 2 costs what phase 1 does
less the request. Run it with `--env DONJON_CONNECT_RATE=1` so that phase 2's bucket does not refill
much while it runs (a node that does not know the setting ignores it). For
before/after pairs, run it alternately in two worktrees.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from harness import LiveNode, start_node

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="x")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _port(node: LiveNode) -> int:
    return int(node.url.rsplit(":", 1)[1])


def _let_through(node: LiveNode, n: int, round_no: int) -> float:
    context = node.tls
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    start = _cpu_s(node.proc.pid)
    for i in range(n):
        source = f"127.{10 + round_no}.{i // 250}.{1 + i % 250}"
        raw = socket.create_connection(("127.0.0.1", _port(node)), 30, (source, 0))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(request)
            while s.recv(4096):
                pass
    return (_cpu_s(node.proc.pid) - start) / n


def _refused(node: LiveNode, n: int, source: str) -> tuple[float, int]:
    hello = _client_hello()
    silent = 0
    start = _cpu_s(node.proc.pid)
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", _port(node)), 30, (source, 0)) as s:
            try:
                s.sendall(hello)
                got = s.recv(4096)
            except ConnectionResetError:
                got = b""
            silent += not got
    return (_cpu_s(node.proc.pid) - start) / n, silent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="DONJON_X=V for the node")
    args = parser.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node(Path(tmp) / "data", extra)
        try:
            flood_source = "127.9.9.9"
            _refused(node, 600, flood_source)  # spends the flooder's burst (256 by default)
            for r in range(args.rounds):
                through = _let_through(node, args.connections, r)
                refused, silent = _refused(node, 5 * args.connections, flood_source)
                rows.append(
                    {
                        "let_through_ms": round(through * 1000, 3),
                        "refused_ms": round(refused * 1000, 3),
                        "refused_silently": silent,
                        "ratio": round(refused / through, 3) if through else None,
                    }
                )
                print(json.dumps({"round": r + 1, **rows[-1]}), flush=True)
        finally:
            node.stop()
    print(
        f"gateway CPU per connection, {args.connections} let through and 5x that "
        f"refused, {args.rounds} rounds: "
        f"let through {[r['let_through_ms'] for r in rows]} ms, "
        f"refused {[r['refused_ms'] for r in rows]} ms "
        f"({[r['refused_silently'] for r in rows]} refused before the handshake), "
        f"refused / let through {[r['ratio'] for r in rows]}"
    )


if __name__ == "__main__":
    main()
