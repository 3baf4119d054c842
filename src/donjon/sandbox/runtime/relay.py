"""The relay in a worker's network namespace: 127.0.0.1:3128 to the node's egress proxy.

It runs in the worker's parent, the short-lived process that made the
worker's namespaces and waits for it: it never imports or runs function
code, holds nothing of a call but the call's token, and is outside the
worker's pid namespace and Landlock domain, so the function cannot reach it
except through the port. Each connection accepted there is forwarded,
verbatim, over a new connection to the proxy's unix socket, after one line
the function never sees: `DONJON-EGRESS/1 <token>\\n`. The proxy knows the
function by the socket (one per sandbox) and the call by the token, which
the supervisor sends here before it hands the call to the worker. Outside a
call (a spare's import, between warm calls) the token is `-`: the proxy
refuses and audits the attempt.

Bounded: at most `MAX_CONNECTIONS` relayed at once (more are closed at
once), `BUFFER` bytes queued per direction. Its memory is charged to the
call's cgroup, which it joined with the worker.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket

from .network import PROXY_SOCKET

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .sockets import Socket

PREAMBLE = b"DONJON-EGRESS/1 "
NO_CALL = b"-"
MAX_CONNECTIONS = 64
BUFFER = 64 * 1024
_TOKEN_MAX = 256


class _Side:
    """One socket of a relayed pair, and the bytes waiting to be written to it."""

    def __init__(self, sock: socket.socket, pending: bytes = b"") -> None:
        self.sock = sock
        self.out = bytearray(pending)
        self.read_done = False  # EOF read from this socket
        self.write_done = False  # its write side shut (the peer's EOF passed on)
        self.peer: _Side


class Relay:
    """Forwards connections until the worker exits; `wait` returns its wait status."""

    def __init__(self, listener: socket.socket, control: Socket, dir_fd: int) -> None:
        self._listener = listener
        self._control = control
        self._control.setblocking(False)
        self._token = NO_CALL
        self._sel = selectors.DefaultSelector()
        self._sides: dict[int, _Side] = {}
        self._dir_fd = dir_fd

    def wait(self, pid: int) -> int:
        """Relay until the worker `pid` exits; its wait status.

        Called after the worker is forked (it keeps its own working directory):
        connections are made by a name relative to the socket's directory,
        which the worker covers with an empty tmpfs in its mount namespace.
        """
        os.fchdir(self._dir_fd)
        os.close(self._dir_fd)
        pidfd = os.pidfd_open(pid)
        sel = self._sel
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._control, selectors.EVENT_READ, "token")
        while True:
            for key, events in sel.select():
                if key.data == "exit":
                    with contextlib.suppress(ChildProcessError):
                        while True:
                            waited, status = os.waitpid(pid, 0)
                            if waited == pid:
                                return status
                    return 0
                if key.data == "accept":
                    self._accept()
                elif key.data == "token":
                    self._read_tokens()
                elif isinstance(key.data, _Side):
                    self._pump(key.data, events)

    def close(self) -> None:
        """Close everything the relay holds (it failed: the worker keeps no egress)."""
        for side in list(self._sides.values()):
            self._drop(side)
        for sock in (self._listener, self._control):
            with contextlib.suppress(OSError):
                sock.close()

    def _read_tokens(self) -> None:
        """The latest token the supervisor sent (one message per call)."""
        while True:
            try:
                msg = self._control.recv(_TOKEN_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:  # no further call (a one-call worker's was handed): keep the last
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(self._control)
                return
            token = msg.strip()  # the proxy's tokens are URL-safe base64: nothing else passes
            plain = token.replace(b"-", b"").replace(b"_", b"")
            self._token = token if plain.isascii() and plain.isalnum() else NO_CALL

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                client, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self._sides) >= 2 * MAX_CONNECTIONS:
                client.close()
                continue
            self._read_tokens()  # the call's token was sent before the call was handed
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.setblocking(False)
            try:
                upstream.connect(PROXY_SOCKET)
            except OSError:  # no proxy, or its backlog is full: this connection fails
                upstream.close()
                client.close()
                continue
            client.setblocking(False)
            a = _Side(client)
            b = _Side(upstream, PREAMBLE + self._token + b"\n")
            a.peer, b.peer = b, a
            for side in (a, b):
                self._sides[side.sock.fileno()] = side
                self._sel.register(side.sock, self._interest(side), side)

    @staticmethod
    def _interest(side: _Side) -> int:
        events = 0
        if not side.read_done and len(side.peer.out) < BUFFER:
            events |= selectors.EVENT_READ
        if side.out:
            events |= selectors.EVENT_WRITE
        return events

    def _pump(self, side: _Side, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                data = side.sock.recv(BUFFER)
                if data:
                    side.peer.out += data
                else:
                    side.read_done = True
            if side.out and events & selectors.EVENT_WRITE:
                sent = side.sock.send(side.out)
                del side.out[:sent]
            self._flush(side.peer)
            self._flush(side)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(side)
            return
        if side.read_done and side.peer.read_done and not side.out and not side.peer.out:
            self._drop(side)
            return
        for s in (side, side.peer):
            self._update(s)

    def _flush(self, side: _Side) -> None:
        """Write what is queued for `side`; pass its peer's EOF on once all is written."""
        if side.out:
            sent = side.sock.send(side.out)
            del side.out[:sent]
        if not side.out and side.peer.read_done and not side.write_done:
            side.write_done = True
            side.sock.shutdown(socket.SHUT_WR)

    def _update(self, side: _Side) -> None:
        events = self._interest(side)
        key = side.sock.fileno()
        if key not in self._sides:
            return
        if events:
            try:
                self._sel.modify(side.sock, events, side)
            except KeyError:
                self._sel.register(side.sock, events, side)
        else:
            with contextlib.suppress(KeyError):
                self._sel.unregister(side.sock)

    def _drop(self, side: _Side) -> None:
        for s in (side, side.peer):
            fd = s.sock.fileno()
            if fd < 0 or self._sides.pop(fd, None) is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s.sock)
            s.sock.close()
