"""The warm path's architecture built from bare parts, with no control (bench/warm_floor.py).

    python bench/floor_server.py serve PORT CERT KEY DB [--worker process|inproc]
        [--audit process|none] [--workers N]
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
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
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
from main import handler

#: A frame: body length, then a number (a call's id; the writer's answers: a count).
HEAD = struct.Struct("!II")

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


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


def _call(body: bytes) -> bytes:
    """What the worker does per call: the event and context in, the result out."""
    rid, _, event = body.partition(b"\n")
    context = type("Context", (), {"request_id": rid.decode()})()
    result = handler(json.loads(event or b"{}"), context)
    return json.dumps(result, separators=(",", ":")).encode()


def make_app(socks: list[socket.socket], writer: socket.socket | None) -> ASGIApp:
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
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(result)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": result})

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

    socks = [_child("worker") for _ in range(args.workers)] if args.worker == "process" else []
    writer = _child("writer", args.db) if args.audit == "process" else None
    config = uvicorn.Config(
        make_app(socks, writer),
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


def worker(fd: int) -> None:
    sock, buf = socket.socket(fileno=fd), bytearray()
    while _read(sock, buf):
        calls = frames(buf)
        sock.sendall(
            b"".join(HEAD.pack(len(r), n) + r for n, r in ((n, _call(b)) for n, b in calls))
        )


def writer(fd: int, db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, record BLOB NOT NULL,"
        " hash BLOB NOT NULL)"
    )
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM t").fetchone()[0]
    digest = bytes(32)  # the audit's column, not its hash: no control here
    sock, buf = socket.socket(fileno=fd), bytearray()
    stats, shown = {"groups": 0, "records": 0, "commit_s": 0.0}, time.monotonic()
    while _read(sock, buf):
        records = frames(buf)
        if not records:
            continue
        rows = [(seq + i, body, digest) for i, (_, body) in enumerate(records, 1)]
        seq += len(rows)
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (seq, record, hash) VALUES (?, ?, ?)", rows)
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
    w = sub.add_parser("worker")
    w.add_argument("fd", type=int)
    a = sub.add_parser("writer")
    a.add_argument("fd", type=int)
    a.add_argument("db")
    args = parser.parse_args()
    if args.what == "serve":
        serve(args)
    elif args.what == "worker":
        worker(args.fd)
    else:
        writer(args.fd, args.db)


if __name__ == "__main__":
    main()
