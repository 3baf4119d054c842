"""The gateway's protocol carries uvicorn's parser callbacks inline (connections.py:
`on_url`, `on_header`, `on_body`, `on_message_complete`) and completes its answers
itself: the same bytes through it and through uvicorn's own protocol give the app the
same requests and the client the same answers, in the same pieces of reading paused."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from donjon.config import ConnectionSettings
from donjon.gateway.connections import protocol_for
from transport_support import KeptTransport

Seen = list[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]]


def _app(seen: Seen) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((scope["method"], scope["path"], scope["query_string"], scope["headers"], body))
        answer = b"%d %s" % (len(body), scope["path"].encode())
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def _serve(kind: type[HttpToolsProtocol], chunks: list[bytes]) -> tuple[Seen, bytes, list[bool]]:
    """What the app saw, what was written and the reading pauses, `chunks` read in turn."""
    seen: Seen = []
    transport = KeptTransport()

    async def go() -> None:
        config = Config(app=_app(seen), timeout_keep_alive=30, log_config=None)
        protocol = kind(config, ServerState(), {}, asyncio.get_running_loop())
        protocol.connection_made(cast(Any, transport))  # a stand-in that keeps what is written
        for chunk in [*chunks, b""]:
            if chunk:
                protocol.data_received(chunk)
            for _ in range(20):  # the requests it started run, their answers go out
                await asyncio.sleep(0)
        protocol.connection_lost(None)

    asyncio.run(go())
    return seen, b"".join(transport.written), transport.reading


_BIG = b"x" * 70_000  # past uvicorn's high-water mark: reading pauses until the app reads

CASES = {
    "head only": [b"GET /a?q=1 HTTP/1.1\r\nHost: n\r\nX-Mixed-Case: V\r\nAccept: */*\r\n\r\n"],
    "body in pieces": [
        b"POST /b HTTP/1.1\r\nhost: n\r\ncontent-length: 11\r\n\r\nhel",
        b"lo ",
        b"world",
    ],
    "expect continue": [
        b"POST /c HTTP/1.1\r\nHost: n\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n",
        b"body",
    ],
    "chunked": [
        b"POST /d HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"2\r\nde\r\n0\r\n\r\n",
    ],
    "pipelined": [
        b"GET /e HTTP/1.1\r\nHost: n\r\n\r\n"
        b"POST /f HTTP/1.1\r\nHost: n\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /g HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n"
    ],
    "large body": [
        b"POST /h HTTP/1.1\r\nHost: n\r\nContent-Length: %d\r\n\r\n" % len(_BIG),
        _BIG,
    ],
    "http 1.0": [b"GET /i HTTP/1.0\r\nHost: n\r\n\r\n"],
}


@pytest.mark.parametrize("chunks", CASES.values(), ids=CASES.keys())
def test_the_same_requests_and_answers_as_uvicorns_own(chunks: list[bytes]) -> None:
    """Each case read through both protocols: the app sees the same method, path, query,
    header fields (names in lower case, in order) and body for every request, and the
    client gets the same bytes (interim answers included), reading paused alike."""
    gateway = protocol_for(ConnectionSettings())
    ours = _serve(gateway, chunks)
    theirs = _serve(HttpToolsProtocol, chunks)
    assert ours[0], "no request reached the app"
    assert ours == theirs
