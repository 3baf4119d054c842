"""The response head is sent with the body's first write, and never lost or reordered."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from donjon.config import ConnectionSettings
from donjon.gateway.response_writer import ResponseWriter
from protocol_support import read_until, served

#: Lets the streamed route finish (set by the test once it has the first chunk).
_RELEASE = threading.Event()


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def _writer() -> tuple[ResponseWriter, _Transport, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    transport = _Transport()
    return ResponseWriter(transport, loop), transport, loop  # type: ignore[arg-type]  # a fake transport


def test_head_and_body_go_in_one_write() -> None:
    """A head followed by its body in the same iteration is one write to the socket."""
    writer, transport, loop = _writer()
    try:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        writer.write(b"{}")
        loop.run_until_complete(asyncio.sleep(0))
        assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    finally:
        loop.close()


def test_a_head_alone_is_sent_on_the_next_iteration() -> None:
    """A streamed response's head is not held while its body is still being made."""
    writer, transport, loop = _writer()
    try:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.writes == []
        loop.run_until_complete(asyncio.sleep(0))
        assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
        writer.write(b"chunk")
        assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n", b"chunk"]
    finally:
        loop.close()


def test_close_sends_what_is_held_first() -> None:
    """Closing the connection right after the head still sends the head, then closes."""
    writer, transport, loop = _writer()
    try:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        writer.close()
        loop.run_until_complete(asyncio.sleep(0))
        assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and transport.closed
        assert writer.is_closing() and writer.get_extra_info("peername") == ("127.0.0.1", 1)
    finally:
        loop.close()


def test_nothing_is_written_to_a_closed_connection() -> None:
    """A head held when the peer went away is dropped, not written to a closed socket."""
    writer, transport, loop = _writer()
    try:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        assert transport.writes == []
    finally:
        loop.close()


# -- through a real server (uvicorn with the gateway's protocol, plain HTTP on loopback) --


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    release = _RELEASE

    async def small(request: Request) -> Response:
        body = await request.body()
        return PlainTextResponse(f"{request.url.path}:{len(body)}")

    async def streamed(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            for _ in range(600):  # until the client has the head and the first chunk
                if release.is_set():
                    break
                await asyncio.sleep(0.05)
            yield b"second"

        return StreamingResponse(chunks())

    app = Starlette(
        routes=[
            Route("/small/{n}", small, methods=["GET", "POST"]),
            Route("/streamed", streamed),
        ]
    )
    try:
        with served(app, ConnectionSettings()) as address:
            yield address
    finally:
        release.set()


def test_pipelined_requests_are_answered_in_order(server: tuple[str, int]) -> None:
    """Three requests sent at once get their three responses, whole and in order."""
    with socket.create_connection(server) as sock:
        sock.sendall(b"".join(b"GET /small/%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(3)))
        data = read_until(sock, lambda d: d.count(b"/small/") == 3)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"/small/0:0") < data.index(b"/small/1:0") < data.index(b"/small/2:0")


def test_expect_100_continue_still_gets_its_interim_response(server: tuple[str, int]) -> None:
    """A client that waits for 100 Continue before its body gets it, then the answer."""
    with socket.create_connection(server) as sock:
        sock.sendall(
            b"POST /small/9 HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
            b"expect: 100-continue\r\n\r\n"
        )
        interim = read_until(sock, lambda d: b"\r\n\r\n" in d)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"abcd")
        data = read_until(sock, lambda d: b"/small/9:4" in d)
    assert b"HTTP/1.1 200 OK" in data


def test_a_streamed_head_is_not_held_for_the_rest_of_the_body(server: tuple[str, int]) -> None:
    """The head and first chunk of a streamed response arrive while the rest is pending."""
    release = _RELEASE
    try:
        with socket.create_connection(server) as sock:
            sock.sendall(b"GET /streamed HTTP/1.1\r\nhost: x\r\n\r\n")
            head = read_until(sock, lambda d: b"first" in d)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"second" not in head
            release.set()
            rest = read_until(sock, lambda d: b"0\r\n\r\n" in d)
        assert b"second" in rest
    finally:
        release.set()


@pytest.mark.parametrize("awaits", [False, True])
def test_the_heads_status_is_read_as_startswith_reads_it(awaits: bool) -> None:
    """A first write told apart by its first 13 bytes (`_STATUS`): the interim 100 sent at
    once, a 429 told to `on_refusal`, a 413 (or any head while a 100 is awaited) given to
    `on_unread`, exactly as `bytes.startswith` with each prefix decides, for heads that
    are, nearly are, or are cut short of each status line."""
    from donjon.gateway import response_writer

    prefixes = (response_writer._CONTINUE, response_writer._REFUSAL, response_writer._TOO_LARGE)
    assert {len(prefix) for prefix in prefixes} == {response_writer._STATUS}
    heads = [b"", b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 4290 X\r\n", b"HTTP/1.0 429 X\r\n"]
    for prefix in prefixes:
        heads += [prefix, prefix + b"X\r\n\r\n", prefix[:-1], prefix[:-1] + b"0"]
    loop = asyncio.new_event_loop()
    try:
        for head in heads:
            refused: list[bytes] = []
            unread: list[bytes] = []
            transport = _Transport()

            def on_unread(data: bytes, unread: list[bytes] = unread) -> bytes:
                unread.append(data)
                return data

            writer = ResponseWriter(
                transport,  # type: ignore[arg-type]  # a fake transport
                loop,
                refused.append,
                on_unread,
                awaits,
            )
            writer.write(head)
            interim = head.startswith(response_writer._CONTINUE)
            assert transport.writes == ([head] if interim else [])
            first = not interim
            assert refused == ([head] if first and head.startswith(b"HTTP/1.1 429 ") else [])
            told = first and (awaits or head.startswith(b"HTTP/1.1 413 "))
            assert unread == ([head] if told else [])
    finally:
        loop.close()
