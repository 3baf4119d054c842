"""The runtime's sockets without the `socket` module (runtime/sockets.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from donjon.sandbox.host import RUNTIME_SOURCE
from donjon.sandbox.runtime import sockets


def _pair() -> tuple[sockets.Socket, sockets.Socket]:
    return sockets.socketpair(sockets.AF_UNIX, sockets.SOCK_SEQPACKET)


def test_descriptors_pass_with_their_message() -> None:
    """A message sent with three descriptors arrives whole, with three descriptors
    open on the same files."""
    ours, theirs = _pair()
    pipes = [os.pipe() for _ in range(3)]
    try:
        sockets.send_fds(ours, [b'{"op": "call"}'], [r for r, _ in pipes])
        msg, fds, _flags, _addr = sockets.recv_fds(theirs, 64, 3)
        assert msg == b'{"op": "call"}'
        assert len(fds) == 3
        for fd, (_, w) in zip(fds, pipes, strict=True):
            os.write(w, b"x")
            assert os.read(fd, 1) == b"x"
            os.close(fd)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        ours.close()
        theirs.close()


def test_a_message_without_descriptors_has_none() -> None:
    """A plain message comes with no descriptors; the peer's end is an empty message."""
    ours, theirs = _pair()
    try:
        ours.send(b"hello")
        assert sockets.recv_fds(theirs, 64, 2)[:2] == (b"hello", [])
        ours.close()
        assert sockets.recv_fds(theirs, 64, 2)[:2] == (b"", [])
    finally:
        ours.close()
        theirs.close()


def test_interoperates_with_the_socket_module() -> None:
    """What the gateway sends with `socket.send_fds` the runtime reads, and what the
    runtime sends with its own `send_fds` the gateway reads with `socket.recv_fds`."""
    host, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sandbox = sockets.Socket(fileno=theirs.detach())
    r, w = os.pipe()
    try:
        socket.send_fds(host, [b"config"], [r])
        msg, fds, _flags, _addr = sockets.recv_fds(sandbox, 64, 2)
        assert msg == b"config" and len(fds) == 1
        sockets.send_fds(sandbox, [b"relay"], fds)
        os.close(fds[0])
        back, more, _flags, _addr = socket.recv_fds(host, 64, 1)
        assert back == b"relay" and len(more) == 1
        os.write(w, b"y")
        assert os.read(more[0], 1) == b"y"
        os.close(more[0])
    finally:
        os.close(r)
        os.close(w)
        host.close()
        sandbox.close()


def test_the_supervisor_does_not_import_socket() -> None:
    """Importing the supervisor as the sandbox does brings neither `socket` nor `selectors`
    (their import is about 2 ms of every sandbox start), nor `mmap`, which only a warm
    sandbox's call page needs."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import runtime.supervisor; "
        "print(sorted({'socket', 'selectors', 'mmap'} & set(sys.modules)))"
    )
    parent = str(RUNTIME_SOURCE.parent)
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, parent],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
