"""A refusal's CPU against a served call's, and the overload that leaves (issue 14, target 6).

    .venv/bin/python bench/refusal_floor.py [--rounds 3] [--seconds 3] [--connections 32]

Under an offered load of F times the sustainable rate S, a node on one core answers
every call: it serves a share `a` of S and refuses the rest, (F - a) x S a second.
If a refusal costs r times what a served call costs (CPU on that core), the core is
busy a + (F - a) x r of the time, so it can serve at most a = (1 - F r) / (1 - r) of S
before it is full, and less if the accepted calls are not to wait in its queue
(target 6: their p99 within 3x the unloaded p99). This bench measures r, in one run,
for Donjon and for two floors of any Python server over the same TLS:

- `donjon`: a real node (tests/harness.py, every control on). A served call: the
  bench's warm function (bench/sandboxes.py), the whole process tree's CPU per call
  on the closed loop. A refusal: a call to a function held at its bounds, shed from
  its request head (gateway/early_shed.py; bench/shed_cost.py's set-up), the whole
  tree's CPU per 503.
- `uvicorn`: uvicorn (httptools, uvloop, as Donjon runs it) with a bare ASGI app
  that answers every request with Donjon's own 503 (early_shed.shed_response).
- `raw`: an asyncio protocol of its own on uvloop: httptools' parser (the URL and
  the headers collected, as any server must to find the credential), the same 503
  written on the message's end, keep-alive kept. Nothing of uvicorn's.

Each round loads each target in turn (the closed-loop client of bench/loadgen.py,
wrk when installed, `--connections` keep-alive connections, `--seconds`); CPU from
/proc. Printed: the medians, r against Donjon's served call for each refusal, and
the bound on `a` at F = 4 (a full core, and one busy 70 % of the time).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import loadgen

FACTOR = 4.0


# -- the floors' servers (run as `refusal_floor.py serve MODE PORT CERT KEY`) --------


def _raw(port: int, context: ssl.SSLContext) -> None:
    import httptools
    import uvloop

    from donjon.gateway.early_shed import shed_response

    class Refuser(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                assert self.transport is not None
                self.transport.close()

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_message_complete(self) -> None:
            assert self.transport is not None
            keep = self.parser.should_keep_alive()
            self.transport.write(shed_response(1, keep))
            self.url, self.headers = b"", []
            if not keep:
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Refuser, "127.0.0.1", port, ssl=context, backlog=1024)
        await server.serve_forever()

    uvloop.run(main())


def _uvicorn(port: int, cert: str, key: str) -> None:
    import uvicorn

    from donjon.gateway.early_shed import shed_response

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        head, _, body = shed_response(1, True).partition(b"\r\n\r\n")
        headers = [tuple(line.split(b": ", 1)) for line in head.split(b"\r\n")[1:] if b": " in line]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        date_header=False,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )


def serve(mode: str, port: int, cert: str, key: str) -> None:
    """Run the floor `mode` (raw or uvicorn) on `port` until killed."""
    if mode == "raw":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        _raw(port, context)
    else:
        _uvicorn(port, cert, key)


# -- the measurement ----------------------------------------------------------------


def _start_floor(mode: str, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    from warm_floor import _wait_port

    from harness import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", mode, str(port), str(cert), str(key)],
        stdout=subprocess.DEVNULL,
    )
    _wait_port(proc, port, f"the {mode} floor")
    return proc, port


def _per(out: dict[str, Any], cpu: float, refused: bool) -> float:
    """CPU µs per answer; every answer must be what the target gives (all refusals, or
    none)."""
    if refused and out["errors"] != out["requests"]:
        raise SystemExit(f"not every answer was a refusal: {out}")
    if not refused and out["errors"]:
        raise SystemExit(f"a served call failed: {out}")
    return float(cpu / max(1, out["requests"]) * 1e6)


def _round(
    targets: dict[str, tuple[loadgen.Request, int, bool]], connections: int, seconds: float
) -> dict[str, float]:
    from overload import tree_cpu

    got = {}
    for name, (req, pid, refused) in targets.items():
        before = tree_cpu(pid)
        out = loadgen.run(req, connections, seconds)
        got[name] = _per(out, tree_cpu(pid) - before, refused)
        sys.stderr.write(f"  {name}: {out['rps']:.0f}/s, {got[name]:.1f} us of CPU each\n")
    return got


def bound(r: float, factor: float = FACTOR, busy: float = 1.0) -> float:
    """The share of the sustainable rate a node on one core can serve under `factor`
    times that rate when a refusal costs `r` served calls and the core may be `busy`."""
    return max(0.0, (busy - factor * r) / (1 - r))


def _targets(
    tmp: Path, cert: Path, floors: dict[str, tuple[int, int]], nodes: list[Any]
) -> dict[str, Any]:
    """Start the two nodes (appended to `nodes` as they start) and name every target:
    the request each is loaded with, the process whose tree's CPU counts, and whether
    every answer must be a refusal. `floors`: each floor's port and process."""
    from overload import UNTHROTTLED
    from sandboxes import write_bundle
    from shed_cost import hold

    from harness import start_node

    # Two nodes: the held function's needs a queue of one place, which would shed the
    # served calls too.
    nodes.append(start_node(tmp / "node"))
    nodes.append(start_node(tmp / "shedding", {"DONJON_MAX_QUEUED_PER_FUNCTION": "1"}))
    node, shedding = nodes
    node.deploy(write_bundle(tmp / "fn", "bench-warm", "warm"))
    key = node.create_key("bench", "invoker", ["bench-warm"], UNTHROTTLED)["key"]
    served = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    held = hold(shedding, tmp)
    body = b'{"name": "bench"}'
    warm = f"{node.url}/v1/functions/bench-warm/invoke"
    targets = {
        "donjon served call": (
            loadgen.Request(warm, body, served, node.cert),
            node.proc.pid,
            False,
        ),
        "donjon refusal": (
            loadgen.Request(f"{shedding.url}/v1/functions/held/invoke", body, held, shedding.cert),
            shedding.proc.pid,
            True,
        ),
    }
    for mode, (port, pid) in floors.items():
        url = f"https://127.0.0.1:{port}/v1/functions/held/invoke"
        targets[f"{mode} refusal"] = (loadgen.Request(url, body, held, str(cert)), pid, True)
    return targets


def report(rounds: list[dict[str, float]], connections: int) -> None:
    median = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    call = median["donjon served call"]
    print(f"\nCPU per answer, median of {len(rounds)} rounds ({connections} connections):")
    print(f"  Donjon's served call (warm, whole tree): {call:7.1f} us")
    print(f"  {'refusal':<34}{'us':>8}{'r':>8}{'a, full core':>15}{'a, 70 % busy':>15}")
    for name in ("donjon refusal", "uvicorn refusal", "raw refusal"):
        r = median[name] / call
        print(f"  {name:<34}{median[name]:8.1f}{r:8.3f}{bound(r):15.2f}{bound(r, busy=0.7):15.2f}")
    print(
        f"  (a: the most of the sustainable rate a node on one core can serve under "
        f"{FACTOR:g}x it, refusing the rest)"
    )


def main() -> None:
    import shutil

    from sandboxes import node_staging

    from donjon.gateway.tls import create_self_signed

    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    with tempfile.TemporaryDirectory(prefix="donjon-refusal-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # bundles under it must be readable by the sandbox user
        cert, key = tmp / "cert.pem", tmp / "key.pem"
        create_self_signed(cert, key)
        floors: dict[str, subprocess.Popen[bytes]] = {}
        nodes: list[Any] = []
        try:
            ports = {}
            for mode in ("uvicorn", "raw"):
                floors[mode], port = _start_floor(mode, cert, key)
                ports[mode] = (port, floors[mode].pid)
            targets = _targets(tmp, cert, ports, nodes)
            for req, _, _ in targets.values():
                loadgen.run(req, args.connections, 1.0)  # warm up
            rounds = []
            for i in range(max(1, args.rounds)):
                sys.stderr.write(f"round {i + 1}\n")
                rounds.append(_round(targets, args.connections, args.seconds))
        finally:
            for live in nodes:
                live.stop()
                shutil.rmtree(node_staging(live.data_dir), ignore_errors=True)
            for proc in floors.values():
                proc.terminate()
                proc.wait(10)
    report(rounds, args.connections)


if __name__ == "__main__":
    main()
