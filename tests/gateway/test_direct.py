"""Which requests the direct route takes (gateway/direct.py): the plain case only.

A real uvicorn server on loopback with the gateway's protocol, a small app whose hot
route echoes its body, and raw requests: the route's count of requests taken says
which were served below the ASGI cycle; every answer is checked too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from donjon.config import ConnectionSettings
from donjon.gateway.app import _server_error
from donjon.gateway.capacity import InFlightLimit
from donjon.gateway.connections import protocol_for
from donjon.gateway.direct import DirectRoute
from donjon.gateway.hot_route import GatewayApp, HotRoute


async def _echo(request: Request) -> Response:
    body = await request.body()
    return Response(request.path_params["name"].encode() + b":" + body)


class _Server:
    def __init__(self, direct: DirectRoute, port: int) -> None:
        self.direct = direct
        self.port = port

    def send(self, data: bytes, answers: int = 1) -> list[bytes]:
        """`data` on a fresh connection; the first `answers` responses' status lines.

        pytest's log capture hangs handlers on uvicorn's access logger while a test runs,
        which turns uvicorn's access log on (and the direct route off): the connection is
        made without them, as the node runs (server.py: no access log)."""
        access = logging.getLogger("uvicorn.access")
        held, access.handlers = access.handlers, []
        try:
            return self._send(data, answers)
        finally:
            access.handlers = held

    def _send(self, data: bytes, answers: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(data)
            buf = b""
            while not _complete(buf, answers):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return re.findall(rb"HTTP/1\.1 [0-9]{3}", buf)


def _complete(buf: bytes, answers: int) -> bool:
    """Whether `buf` holds `answers` whole responses (framed by Content-Length)."""
    for _ in range(answers):
        if b"\r\n\r\n" not in buf:
            return False
        head, buf = buf.split(b"\r\n\r\n", 1)
        size = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":", 1)[1])
        if len(buf) < size:
            return False
        buf = buf[size:]
    return True


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    route = Route("/v1/functions/{name}/invoke", _echo, methods=["POST"])
    app = GatewayApp(routes=[route])
    app.hot = HotRoute(route, _server_error)
    outer = InFlightLimit(app, 64)
    direct = DirectRoute(outer, app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        outer,
        log_level="error",
        log_config=None,  # as the node: uvicorn's access logger gets no handler
        lifespan="off",
        access_log=False,
        ws="none",
        proxy_headers=False,  # uvicorn's default wraps the app: then nothing is taken
        http=protocol_for(ConnectionSettings(refusal_hold_s=0), (), None, direct),
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        threading.Event().wait(0.05)
    try:
        yield _Server(direct, port)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


def _post(extra: bytes = b"", body: bytes = b"{}", version: bytes = b"1.1") -> bytes:
    return (
        b"POST /v1/functions/f/invoke HTTP/" + version + b"\r\nHost: x\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


@pytest.mark.parametrize(
    ("request_bytes", "taken", "status"),
    [
        (_post(), 1, b"200"),
        (_post(body=b""), 1, b"200"),
        (_post(version=b"1.0"), 1, b"200"),
        (_post(b"Connection: close\r\n"), 1, b"200"),
        (b"POST /v1/functions/f/invoke HTTP/1.1\r\nHost: x\r\n\r\n", 1, b"200"),
        (
            b"POST /v1/functions/f/invoke HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            0,
            b"200",
        ),
        (_post(b"Expect: 100-continue\r\n"), 0, b"100"),
        (_post(b"Connection: Upgrade\r\nUpgrade: websocket\r\n"), 0, b"200"),
        (_post(b"Upgrade: h2c\r\n"), 0, b"200"),
        (b"GET /v1/functions/f/invoke HTTP/1.1\r\nHost: x\r\n\r\n", 0, b"405"),
        (b"POST /v1/functions/f/invoke/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0, None),
    ],
)
def test_only_the_plain_case_is_taken(
    server: _Server, request_bytes: bytes, taken: int, status: bytes | None
) -> None:
    """Plain POSTs (HTTP/1.1 or 1.0, one Content-Length or none) are taken; chunked bodies,
    Expect, upgrades, other methods and paths go through ASGI."""
    before = server.direct.served
    lines = server.send(request_bytes)
    assert server.direct.served - before == taken, lines
    if status is not None:
        assert lines and lines[0][9:12] == status, lines


def test_pipelined_requests_behind_a_direct_one_go_through_asgi(server: _Server) -> None:
    """Three requests in one write: the first is taken, the two queued behind it are not;
    all three are answered in order."""
    before = server.direct.served
    lines = server.send(_post(body=b"1") + _post(body=b"2") + _post(body=b"3"), answers=3)
    assert server.direct.served - before == 1
    assert [line[9:12] for line in lines] == [b"200"] * 3


def test_no_hot_route_no_direct_route() -> None:
    """An app without a hot route cannot be served directly."""
    app = GatewayApp(routes=[])
    with pytest.raises(ValueError, match="no hot route"):
        DirectRoute(InFlightLimit(app, 1), app)
