"""An ASGI app served by uvicorn with the gateway's connection protocol, plain HTTP on
loopback, and a raw socket's reads: for tests of connections.py's own behaviour."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from donjon.config import ConnectionSettings
from donjon.gateway.connections import protocol_for
from harness import free_port


@contextmanager
def served(app: Any, settings: ConnectionSettings) -> Iterator[tuple[str, int]]:
    """`app` served on a free loopback port (its address) until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, http=protocol_for(settings)
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started
    try:
        yield "127.0.0.1", port
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    """What the socket receives until `done` says it is enough, or it closes."""
    sock.settimeout(30)
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
