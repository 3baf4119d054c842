"""What the gateway holds of one warm sandbox's calls: its channel, call page and relay.

Made by `Instance.start` for `isolation: warm` (instance.py), before the
sandbox boots: the worker's end of the channel and the call page go to the
supervisor with the boot message (`handed`), once; the supervisor passes the
channel on to the worker when it is ready (runtime/supervisor.py) and, for a
function granted egress, hands the gateway the worker's relay, to which each
call's egress token is written before the call is sent (egresslink.py: the
token goes to the relay, never to the function). warmlink.py has the
protocol and the trust argument.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Callable

from donjon.sandbox.warmlink import CallPage, WarmLink

__all__ = ["WarmChannel"]

_RELAY = b'{"op":"relay"}'


class WarmChannel:
    """One warm sandbox's channel, call page and relay, from boot to close."""

    def __init__(self) -> None:
        self.page = CallPage()
        self._sock, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        #: for the boot message: the worker's end of the channel, and the call page
        self.handed: list[int] = [worker_end.detach(), self.page.fd]
        self.link: WarmLink | None = None
        self._relay: socket.socket | None = None

    def handed_over(self) -> None:
        """The supervisor has its copies (or never will): the gateway's go."""
        if self.handed:
            os.close(self.handed[0])
            self.handed = []
            self.page.close_fd()

    def take_relay(self, data: bytes, fds: list[int], wanted: bool) -> None:
        """The supervisor's hand-over of the worker's relay (once, while it starts)."""
        fd, *extra = fds
        for other in extra:
            os.close(other)
        if wanted and self._relay is None and data == _RELAY and _is_socket(fd):
            self._relay = socket.socket(fileno=fd)
            self._relay.setblocking(False)
        else:
            os.close(fd)

    def connect(self, on_broken: Callable[[str], None], *, egress: bool) -> bool:
        """Start reading the channel; False if a relay was due and none came."""
        if egress and self._relay is None:
            return False
        self.link = WarmLink(self._sock, on_broken)
        return True

    def begin(self, call_id: int, deadline: float, token: str | None) -> bool:
        """A call begins: its token to the relay, its id and deadline in the page;
        True if the supervisor dozes and must be woken."""
        if token is not None and self._relay is not None:
            with contextlib.suppress(OSError):
                self._relay.send(token.encode())
        return self.page.begin(call_id, deadline)

    def close(self) -> None:
        self.handed_over()
        if self.link is not None:
            self.link.close()
            self.link = None
        else:
            self._sock.close()
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def release_page(self) -> None:
        """The sandbox is gone: the page's mapping goes too."""
        self.page.close()


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
