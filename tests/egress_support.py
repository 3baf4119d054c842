"""A real egress proxy on its own event loop, with real servers on a loopback address.

`ProxyRig` runs an `EgressProxy` (real unix sockets, a real audit log in a
SQLite file) on an event loop in a thread, beside an HTTPS server on port 443
and a plain HTTP server, both on a loopback address of their own (127.0.x.y,
picked free, standing in for the internet: DONJON_EGRESS_ALLOW_NETWORKS lists
it). `relay()` stands in for the relay inside a sandbox: a TCP port on
127.0.0.1 whose connections go to the sandbox's socket, after the call's
token line, so urllib and raw sockets can use it as their HTTP proxy.
Names resolve through a fixed table (the proxy's resolver is an interface;
the DNS one is tested with the resolver).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import random
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from donjon.audit import AuditLog
from donjon.config import EgressSettings
from donjon.egress.addresses import IPAddress
from donjon.egress.proxy import TOKEN_PREFIX, EgressProxy, SandboxEgress
from donjon.egress.resolve import ResolveError, Resolver
from donjon.gateway.tls import create_self_signed
from donjon.secret import Secret
from donjon.store import connect, create_schema
from donjon.store.tables import audit_log

T = TypeVar("T")
KEY = Secret(b"k" * 32)
API = "api.donjon.test"
OTHER = "other.donjon.test"


class TableResolver:
    """Names from a fixed table; counts the questions asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str, caller: str = "") -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.table:
            raise ResolveError(f"{host}: no such name", hint="")
        return [ipaddress.ip_address(a) for a in self.table[host]]


@dataclass
class Upstream:
    """What the servers standing in for the internet saw."""

    heads: list[bytes] = field(default_factory=list)
    body: bytes = b"hello from upstream"


async def _serve_http(up: Upstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        up.heads.append(head)
        line = head.split(b"\r\n", 1)[0].split(b" ")
        path = line[1] if len(line) > 1 else b"?"
        body = up.body if path != b"/big" else b"x" * (256 * 1024)
        if path == b"/echo":
            body = head
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=5\r\n\r\n%s" % (len(body), body)
        )
        await w.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 30)  # until the proxy closes
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        w.close()


def _free_loopback() -> tuple[str, socket.socket, socket.socket]:
    """A loopback address whose 443 and one other port are ours (bound, not listening)."""
    for _ in range(50):
        address = f"127.0.{random.randint(2, 250)}.{random.randint(2, 250)}"  # noqa: S311 - an address, not a secret
        tls = socket.socket()
        try:
            tls.bind((address, 443))
        except OSError:
            tls.close()
            continue
        plain = socket.socket()
        plain.bind((address, 0))
        return address, tls, plain
    raise RuntimeError("no free loopback address with port 443")


class ProxyRig:
    """The proxy, its audit log and the upstream servers, on one loop in a thread."""

    def __init__(self, tmp: Path, resolver: Resolver | None = None, **limits: Any) -> None:
        self.address, tls_sock, plain_sock = _free_loopback()
        self.upstream = Upstream()
        self.ca = tmp / "cert.pem"
        create_self_signed(self.ca, tmp / "key.pem", (API, OTHER, self.address))
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(self.ca, tmp / "key.pem")
        self.resolver = TableResolver(
            {
                API: [self.address],
                OTHER: [self.address],
                "loop.donjon.test": ["127.0.0.1"],
                "private.donjon.test": ["10.1.2.3"],
                "meta.donjon.test": ["169.254.169.254"],
                "mixed.donjon.test": [self.address, "127.0.0.1"],
                "mapped.donjon.test": ["::ffff:127.0.0.1"],
            }
        )
        self.engine = connect(f"sqlite:///{tmp / 'audit.db'}")
        create_schema(self.engine)
        self.audit = AuditLog(self.engine, KEY)
        from donjon.egress.addresses import parse_networks

        settings = EgressSettings(
            allow_networks=parse_networks(f"{self.address}/32"),
        )
        self.settings = replace(settings, **limits)
        self.proxy = EgressProxy(
            self.settings, self.audit, tmp / "run" / "egress", resolver or self.resolver
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.audit.start()
        self.tls_port = 443
        self.http_port = plain_sock.getsockname()[1]
        self._servers: list[asyncio.Server] = []
        self._relays: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[Any]] = set()

        async def start() -> None:
            await self.proxy.start()
            handler = self._tracked(functools.partial(_serve_http, self.upstream))
            tls_sock.listen(64)
            plain_sock.listen(64)
            self._servers.append(await asyncio.start_server(handler, sock=tls_sock, ssl=server_ctx))
            self._servers.append(await asyncio.start_server(handler, sock=plain_sock))

        self.run(start())

    def _tracked(
        self,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]:
        """`handler`, its task remembered until it ends, so close() can end the ones still open."""

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.add(task)
            try:
                await handler(reader, writer)
            finally:
                writer.close()
                self._handlers.discard(task)

        return run

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return self.run(wrap())

    def open(self, egress: list[str], attempts: str = "alert") -> SandboxEgress:
        return self.run(self.proxy.open_sandbox("fn", 3, egress, attempts))

    def begin(
        self,
        sandbox: SandboxEgress,
        request_id: str = "req-1",
        on_refused: Callable[[str], None] | None = None,
    ) -> str:
        return self.call_soon(lambda: sandbox.begin_call(request_id, on_refused))

    def relay(self, sandbox: SandboxEgress, token: str) -> int:
        """A TCP port on 127.0.0.1 that relays to the sandbox's socket after `token`."""

        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            fd = os.open(sandbox.socket_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:  # through the directory: the path may be longer than sun_path takes
                r2, w2 = await asyncio.open_unix_connection(f"/proc/self/fd/{fd}/proxy.sock")
            except OSError:
                return
            finally:
                os.close(fd)
            try:
                w2.write(TOKEN_PREFIX + token.encode() + b"\n")

                async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                    with contextlib.suppress(OSError):
                        while data := await src.read(65536):
                            dst.write(data)
                            await dst.drain()
                        if dst.can_write_eof():
                            dst.write_eof()

                await asyncio.gather(pipe(reader, w2), pipe(r2, writer), return_exceptions=True)
            finally:
                w2.close()

        async def start() -> int:
            server = await asyncio.start_server(self._tracked(one), "127.0.0.1", 0)
            self._relays.append(server)
            return int(server.sockets[0].getsockname()[1])

        return self.run(start())

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def records(self, action: str = "egress.connect") -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.record).order_by(audit_log.c.seq)).scalars()
            out = [json.loads(bytes(r)) for r in rows]
        return [r for r in out if r["action"] == action]

    def close(self) -> None:
        async def stop() -> None:
            await self.proxy.close()
            for server in self._servers + self._relays:
                server.close()
            # A server's close() leaves its open connections be: end their
            # handlers here, so no socket outlives the loop.
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await asyncio.sleep(0)  # let the transports' close callbacks run

        with contextlib.suppress(Exception):
            self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
        self.audit.stop()
        self.engine.dispose()


@contextlib.contextmanager
def rig(tmp: Path, resolver: Resolver | None = None, **limits: Any) -> Iterator[ProxyRig]:
    r = ProxyRig(tmp, resolver, **limits)
    try:
        yield r
    finally:
        r.close()


def raw_request(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send `data` to the relay on `port` and read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def connect_head(s: socket.socket, target: str) -> bytes:
    """Send `CONNECT target` on `s` (a connection to a relay); the proxy's answer's head
    (and whatever came with it), or what came before the proxy closed."""
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def connect_tls(
    rig_: ProxyRig, port: int, target: str, server_hostname: str | None
) -> tuple[bytes, bytes]:
    """CONNECT `target` through the relay, then TLS with `server_hostname` as SNI and
    GET /; returns (the proxy's answer to CONNECT, the HTTPS response or b"")."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        answer = connect_head(s, target)
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer, b""
        ctx = rig_.client_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the SNI is what is tested; the cert is not
        try:
            with ctx.wrap_socket(s, server_hostname=server_hostname) as t:
                t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                return answer, t.recv(65536)
        except (ssl.SSLError, OSError):
            return answer, b""
