"""A loopback relay to a PostgreSQL that cuts a connection at its COMMIT (the answer of
a commit lost, as a network cut or a server's restart loses it): the queue's enqueue
(triggers/queue/commit.py) and the audit writer (audit/pipeline.py) are tried with it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

from donjon.store import connect, create_schema
from harness import free_port
from postgres_support import PostgresServer

__all__ = ["COMMIT", "CommitCutter", "relayed_postgres"]

#: The simple query PostgreSQL's clients send to commit (psycopg's `commit()`).
COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"


class CommitCutter:
    """Relays loopback connections to `upstream`; once `armed`, cuts the connection that
    sends a COMMIT: after the server answered it (`after=True`: unread by the client) or
    before the server got it. `down`: new connections are closed at once. `on_cut`, if
    set, runs once the server has answered a COMMIT that is cut after, before the client
    learns of the cut (what happens to the rows meanwhile: run and pruned)."""

    def __init__(self, upstream: int) -> None:
        self.upstream, self.port = upstream, free_port()
        self.armed, self.after, self.down, self.cuts = False, True, False, 0
        self.on_cut: Callable[[], None] | None = None
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream))
            cut = threading.Event()
            threading.Thread(target=self._up, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, cut), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed and COMMIT in data:
                    self.armed = False
                    self.cuts += 1
                    if not self.after:
                        break  # the server never sees it: it rolls back
                    cut.set()  # its answer is not relayed
                server.sendall(data)
        _close(client, server)

    def _down(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if cut.is_set():
                    if self.on_cut is not None:
                        self.on_cut()
                    break  # committed: the client never hears it
                client.sendall(data)
        _close(client, server)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


@contextlib.contextmanager
def relayed_postgres() -> Iterator[tuple[PostgresServer, CommitCutter]]:
    """A PostgreSQL of its own with Donjon's schema, and a CommitCutter in front of it."""
    server = PostgresServer()
    server.start()
    cutter = CommitCutter(server.port)
    try:
        engine = connect(server.url)
        create_schema(engine)
        engine.dispose()
        yield server, cutter
    finally:
        cutter.close()
        server.stop()
