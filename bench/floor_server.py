"""The warm path's architecture built from bare parts, with no control (bench/warm_floor.py).

    python bench/floor_server.py serve PORT CERT KEY DB [--worker process|inproc]
        [--audit process|none] [--workers N] [--controls KEY] [--shed N]
    python bench/floor_server.py worker FD          # started by `serve`
    python bench/floor_server.py writer FD DB       # started by `serve`

`serve` is uvicorn configured as bench/baselines.py configures bare Starlette
(uvloop and httptools when installed, no access log, no server header, the
same certificate) serving one raw ASGI app. For each POST it:
(a) sends the request id and the body to a worker process (a separate Python
    interpreter, as a warm sandbox's worker is) as one framed message over a
    persistent unix socket, and awaits the reply with that id; the worker
    decodes the JSON, calls the bench handler and encodes its result;
(b) sends a record of the call (a JSON line of the size and shape of an audit
    record) to a writer process over another persistent unix socket, and
    awaits its commit: the writer reads every record waiting, inserts them
    with one `executemany` and commits once (SQLite, WAL, synchronous=FULL,
    the audit's pragmas and the audit table's columns: group commit), then
    answers the count, and only then is the waiter answered (it keeps its
    groups, records and commit time in DB.stats, rewritten every 0.25 s);
and then answers 200 with the handler's result.

What it does not do, on purpose: TLS aside, none of Donjon's controls (no key
check, policy, schema, rate limit, hash chain, signature, checkpoint, metrics,
monitor, sandbox, supervisor). The worker and the writer are children of the
server process, so the CPU of its process tree is the whole architecture's.

`--worker inproc` calls the handler in the server process (no worker, no hop);
`--audit none` skips the append; `--workers N` spreads calls over N workers.
`--controls KEY` adds target 1's controls at their leanest (bench/floor_controls.py),
KEY the one API key they accept: the server checks the key, the policy, the rate
limits, the slots, the body against the schema and the call's timeout, counts the
metrics and the monitor's figures; the writer chains each record, writes its
invocation row and signs each commit's head; the worker reads its resource use.
`--shed N` bounds the calls in flight (admitted, not yet answered): with N of them, a
new request is answered 503 at once (a short problem document, `retry-after: 1`),
before its body is read or anything else checked: the cheapest shed the app can make
(bench/overload_floor.py offers it 4x its sustainable rate, issue 14 target 6).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import secrets
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent / "handler"))
from floor_controls import Chain, Gate, Monitor, Refused
from main import handler

#: A frame: body length, then a number (a call's id; the writer's answers: a count).
HEAD = struct.Struct("!II")

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
#: `--shed`'s answer: a short problem document (RFC 9457), made once.
SHED_BODY = (
    b'{"type": "about:blank", "title": "Service Unavailable", "status": 503,'
    b' "detail": "The node is at its bound of calls in flight."}'
)
SHED_START: Message = {
    "type": "http.response.start",
    "status": 503,
    "headers": [
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"%d" % len(SHED_BODY)),
        (b"retry-after", b"1"),
    ],
}
SHED_END: Message = {"type": "http.response.body", "body": SHED_BODY}


def frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take every whole frame off the front of `buf`."""
    out, pos, size = [], 0, len(buf)
    while size - pos >= HEAD.size:
        length, number = HEAD.unpack_from(buf, pos)
        end = pos + HEAD.size + length
        if end > size:
            break
        out.append((number, bytes(buf[pos + HEAD.size : end])))
        pos = end
    del buf[:pos]
    return out


class Channel(asyncio.Protocol):
    """One persistent unix socket to a child; writes of one loop iteration go out as one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, number: int, body: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(HEAD.pack(len(body), number) + body)

    def _flush(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        for number, body in frames(self._buf):
            self.answer(number, body)

    def answer(self, number: int, body: bytes) -> None:
        raise NotImplementedError


class WorkerChannel(Channel):
    """Calls to a worker: each reply names its call's id."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._next = 0

    def call(self, body: bytes) -> asyncio.Future[bytes]:
        self._next += 1
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        self.send(self._next, body)
        return fut

    def answer(self, number: int, body: bytes) -> None:
        self._waiting.pop(number).set_result(body)


class WriterChannel(Channel):
    """Records to the writer: each answer says how many of the oldest waiters are durable."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def append(self, record: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self.send(0, record)
        return fut

    def answer(self, number: int, body: bytes) -> None:
        for _ in range(number):
            self._waiting.popleft().set_result(None)


class Context:
    """What the handler reads of its context (one class, not a class made per call)."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id


def _call(body: bytes) -> bytes:
    """What the worker does per call: the event and context in, the result out."""
    rid, _, event = body.partition(b"\n")
    result = handler(json.loads(event or b"{}"), Context(rid.decode()))
    return json.dumps(result, separators=(",", ":")).encode()


async def controlled(
    gate: Gate,
    worker: WorkerChannel,
    log: WriterChannel,
    scope: Scope,
    body: bytes,
    rid: str,
    started: float,
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The floor's call with the lean controls around it (bench/floor_controls.py)."""
    try:
        gate.route(scope["method"], scope["path"])
        principal = gate.authenticate(scope["headers"], started)
        gate.allow(principal, started)
    except Refused as refused:
        await _refuse(refused, send)
        return
    try:
        try:
            Gate.event(body)
        except Refused as refused:
            await _refuse(refused, send)
            return
        call = worker.call(rid.encode() + b"\n" + body)
        timeout = asyncio.get_running_loop().call_later(30.0, call.cancel)
        try:
            result = await call
        finally:
            timeout.cancel()
    finally:
        gate.release(principal)
    seconds = time.time() - started
    gate.observe(principal, 200, seconds)
    if gate.monitor is not None:
        gate.monitor.see(principal, gate.function, started, seconds)
    client = scope["client"][0] if scope.get("client") else ""
    await log.append(gate.record(principal, rid, started, seconds, client))
    await _ok(send, result, (b"x-request-id", rid.encode()))


async def _ok(
    send: Callable[[Message], Awaitable[None]], result: bytes, *extra: tuple[bytes, bytes]
) -> None:
    """200 with `result` (JSON) and `extra` headers."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(result))]
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": result})


async def _refuse(refused: Refused, send: Callable[[Message], Awaitable[None]]) -> None:
    """A control's no: its status, no body (the lean floor measures the yes path)."""
    headers = [(b"content-length", b"0")]
    await send({"type": "http.response.start", "status": refused.args[0], "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def make_app(
    socks: list[socket.socket], writer: socket.socket | None, gate: Gate | None = None
) -> ASGIApp:
    workers: list[WorkerChannel] = []
    log: list[WriterChannel] = []
    turn = 0

    async def connect() -> None:
        loop = asyncio.get_running_loop()
        for s in socks:
            _, w = await loop.create_unix_connection(WorkerChannel, sock=s)
            workers.append(w)
        if writer is not None:
            _, a = await loop.create_unix_connection(WriterChannel, sock=writer)
            log.append(a)

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        nonlocal turn
        if scope["type"] == "lifespan":
            while (msg := await receive())["type"] != "lifespan.shutdown":
                await connect()
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        rid = secrets.token_hex(8)
        started = time.time()
        if gate is not None:
            turn = (turn + 1) % len(workers)
            await controlled(gate, workers[turn], log[0], scope, body, rid, started, send)
            return
        if workers:
            turn = (turn + 1) % len(workers)
            result = await workers[turn].call(rid.encode() + b"\n" + body)
        else:
            result = _call(rid.encode() + b"\n" + body)
        if log:
            record = {
                "action": "function.invoke",
                "actor": "key:0123456789abcdef",
                "detail": {"client": "127.0.0.1", "duration_ms": round(time.time() - started, 6)},
                "outcome": "ok",
                "request_id": rid,
                "target": "bench-warm@1",
                "ts": started,
            }
            await log[0].append(json.dumps(record, separators=(",", ":")).encode())
        await _ok(send, result)

    return app


def bounded(inner: ASGIApp, limit: int) -> ASGIApp:
    """`inner` with at most `limit` calls in flight (admitted, not yet answered): a request
    beyond them is answered `SHED_START`/`SHED_END` at once, its body unread, nothing checked."""
    inflight = 0

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        nonlocal inflight
        if scope["type"] != "http":  # the lifespan
            await inner(scope, receive, send)
            return
        if inflight >= limit:
            await send(SHED_START)
            await send(SHED_END)
            return
        inflight += 1
        try:
            await inner(scope, receive, send)
        finally:
            inflight -= 1

    return app


def _child(kind: str, *args: str) -> socket.socket:
    """Start `kind` as a child with its end of a socketpair; our end, non-blocking."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    subprocess.Popen(
        [sys.executable, __file__, kind, str(theirs.fileno()), *args],
        pass_fds=(theirs.fileno(),),
    )
    theirs.close()
    ours.setblocking(False)
    return ours


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    lean = ["--controls"] if args.controls else []
    if args.controls and (args.worker != "process" or args.audit != "process"):
        raise SystemExit("--controls needs the worker and writer processes")
    socks = (
        [_child("worker", *lean) for _ in range(args.workers)] if args.worker == "process" else []
    )
    writer = _child("writer", args.db, *lean) if args.audit == "process" else None
    gate = Gate(args.controls) if args.controls else None
    if gate is not None and args.monitor:
        gate.monitor = Monitor()
    app = make_app(socks, writer, gate)
    if args.shed is not None:
        app = bounded(app, args.shed)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
    )
    uvicorn.Server(config).run()


def _read(sock: socket.socket, buf: bytearray) -> bool:
    """Block for data, then take everything waiting; False once the server is gone."""
    data = sock.recv(1 << 20)
    if not data:
        return False
    buf += data
    while True:
        try:
            data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        if not data:
            return False
        buf += data


def worker(fd: int, controls: bool = False) -> None:
    sock, buf = socket.socket(fileno=fd), bytearray()
    call = _measured_call if controls else _call
    while _read(sock, buf):
        calls = frames(buf)
        sock.sendall(
            b"".join(HEAD.pack(len(r), n) + r for n, r in ((n, call(b)) for n, b in calls))
        )


def _measured_call(body: bytes) -> bytes:
    """A call, then the worker's resource use read (the memory and CPU a call's record keeps)."""
    result = _call(body)
    resource.getrusage(resource.RUSAGE_SELF)
    return result


def writer(fd: int, db: str, controls: bool = False) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, record BLOB NOT NULL,"
        " hash BLOB NOT NULL)"
    )
    chain = Chain() if controls else None
    if chain is not None:
        for statement in Chain.SCHEMA:
            conn.execute(statement)
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM t").fetchone()[0]
    digest = bytes(32)  # the audit's column, not its hash: no control here
    sock, buf = socket.socket(fileno=fd), bytearray()
    stats, shown = {"groups": 0, "records": 0, "commit_s": 0.0}, time.monotonic()
    while _read(sock, buf):
        records = frames(buf)
        if not records:
            continue
        started = time.perf_counter()
        if chain is None:
            rows = [(seq + i, body, digest) for i, (_, body) in enumerate(records, 1)]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (seq, record, hash) VALUES (?, ?, ?)", rows)
        else:
            rows, calls = [], []
            for i, (_, body) in enumerate(records, 1):
                record, head, call = chain.link(body)
                rows.append((seq + i, record, head))
                calls.append((seq + i, *call))
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (seq, record, hash) VALUES (?, ?, ?)", rows)
            conn.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?)", calls)
            last = seq + len(rows)
            conn.execute("INSERT INTO heads VALUES (?, ?, ?)", (last, chain.head, chain.sign(last)))
        seq += len(rows)
        conn.execute("COMMIT")
        stats["commit_s"] += time.perf_counter() - started
        sock.sendall(HEAD.pack(0, len(rows)))
        stats["groups"] += 1
        stats["records"] += len(rows)
        if time.monotonic() - shown > 0.25:  # for the bench: groups, records, commit time
            shown = time.monotonic()
            Path(db + ".tmp").write_text(json.dumps(stats))
            os.replace(db + ".tmp", db + ".stats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    s.add_argument("cert")
    s.add_argument("key")
    s.add_argument("db")
    s.add_argument("--worker", choices=["process", "inproc"], default="process")
    s.add_argument("--audit", choices=["process", "none"], default="process")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--controls", metavar="KEY", help="the lean controls, KEY the API key")
    s.add_argument("--monitor", action="store_true", help="with --controls: Donjon's detectors")
    s.add_argument("--shed", type=int, metavar="N", help="503 at once with N calls in flight")
    w = sub.add_parser("worker")
    w.add_argument("fd", type=int)
    w.add_argument("--controls", action="store_true")
    a = sub.add_parser("writer")
    a.add_argument("fd", type=int)
    a.add_argument("db")
    a.add_argument("--controls", action="store_true")
    args = parser.parse_args()
    if args.what == "serve":
        serve(args)
    elif args.what == "worker":
        worker(args.fd, args.controls)
    else:
        writer(args.fd, args.db, args.controls)


if __name__ == "__main__":
    main()
