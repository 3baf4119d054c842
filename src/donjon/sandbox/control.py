"""The gateway's end of a sandbox's control channel: what the supervisor says.

Split from instance.py. The channel is a SOCK_SEQPACKET socket to the
sandbox's supervisor, one JSON message per packet. The supervisor's sandbox
runs function code, so everything read here is untrusted: a message that
does not parse, or says something unexpected, is dropped. While the sandbox
starts, its messages (hello, then ready or failed) queue in `inbox`, a few
at most; the exit report of an invocation settles that call's future in
`exits`; runtime policy events go to the calls' `CallPolicyEvents`; a
message with descriptors (only ever the warm worker's relay) goes to
`on_fds`. At its end every call still waiting is told `sandbox-gone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from donjon import boundedjson
from donjon.boundedjson import JSONTooDeep
from donjon.sandbox.policy_events import CallPolicyEvents

__all__ = ["ControlChannel"]

#: Start messages kept at most (hello, then ready or failed; more is the sandbox's noise).
_INBOX = 4


class ControlChannel:
    """Reads the supervisor's messages (see the module) once `attach`ed to its socket."""

    def __init__(self, policy_events: CallPolicyEvents) -> None:
        self._policy_events = policy_events
        self.sock: socket.socket | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: call id -> its exit report, once the supervisor sends it
        self.exits: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: True while the sandbox starts: its messages go to `inbox`
        self.starting = True
        self._on_fds: Callable[[bytes, list[int]], None] = lambda _data, _fds: None
        self._on_eof: Callable[[], None] = lambda: None

    def attach(
        self,
        sock: socket.socket,
        on_fds: Callable[[bytes, list[int]], None],
        on_eof: Callable[[], None],
    ) -> None:
        """Read `sock` (non-blocking from here) on the running loop."""
        self.sock, self._on_fds, self._on_eof = sock, on_fds, on_eof
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)

    def detach(self) -> None:
        """Stop reading (the socket stays open)."""
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())

    def settle(self) -> None:
        """Every call still waiting for its exit report: its sandbox is gone."""
        for fut in list(self.exits.values()):
            if not fut.done():
                fut.set_result({"op": "exit", "status": "sandbox-gone"})

    def _on_readable(self) -> None:
        if self.sock is None:
            return
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if fds:
                self._on_fds(data, fds)
                continue
            if not data:
                self._ended()
                return
            try:
                self._on_message(boundedjson.loads(data))
            except (ValueError, KeyError, TypeError, JSONTooDeep):
                continue

    def _on_message(self, msg: Any) -> None:
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "exit":
            fut = self.exits.pop(int(msg["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif op == "policy":
            self._policy_events.on_message(msg)
        elif isinstance(msg, dict) and self.starting and self.inbox.qsize() < _INBOX:
            self.inbox.put_nowait(msg)

    def _ended(self) -> None:
        self._on_eof()
        self.detach()
        self.inbox.put_nowait({"op": "eof"})
        self.settle()
        self.exits.clear()
