"""The postgres trigger's relay closes every socket it holds when its listener stops,
whatever step a connection had reached (ci56e: a socket the relay had accepted was left
open when the listener was cancelled while the relay was still dialling the server)."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from donjon.triggers.postgres_relay import Relays


def _leaks(go: Callable[[], Coroutine[Any, Any, None]]) -> list[str]:
    """The sockets left open (ResourceWarnings) once `go` has run and the garbage is
    collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(go())
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def _stalled_server() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket whose accept queue is full, so a new connect waits (Linux drops
    the SYN), and the connections that fill it."""
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers: list[socket.socket] = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(server.getsockname())
        fillers.append(client)
    return server, fillers


def test_a_listener_stopped_while_the_relay_dials_leaves_no_socket_open() -> None:
    server, fillers = _stalled_server()

    async def go() -> None:
        relays = Relays(connect_timeout=30)
        port = await relays.open("127.0.0.1", int(server.getsockname()[1]))
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(50):  # the relay has accepted it and is dialling the server
            await asyncio.sleep(0.01)
        await relays.close()
        writer.close()
        await writer.wait_closed()

    try:
        assert _leaks(go) == []
    finally:
        for sock in (server, *fillers):
            sock.close()


def test_a_listener_stopped_mid_relay_leaves_no_socket_open() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    async def go() -> None:
        relays = Relays(connect_timeout=30)
        port = await relays.open("127.0.0.1", int(server.getsockname()[1]))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        upstream, _ = await asyncio.to_thread(server.accept)
        upstream.sendall(b"R" * 10)
        assert await reader.readexactly(10) == b"R" * 10  # relayed both ways
        await relays.close()
        assert await reader.read() == b""  # the relay's end closed
        writer.close()
        await writer.wait_closed()
        upstream.close()

    try:
        assert _leaks(go) == []
    finally:
        server.close()
