"""A warm worker's frame reader (runtime/frames.py): frames whole, and one wake-up per call."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.sandbox.runtime.frames import FrameError, FrameReader, send_frames


def _serve(sock: socket.socket) -> None:
    """The worker's loop, reduced: read a call's frame, answer it; exit at the channel's end.
    Never returns (a forked copy of the test run)."""
    code = 1
    try:
        reader = FrameReader(sock)
        while True:
            send_frames(sock, b"reply:" + reader.frame())
    except FrameError:
        code = 0
    finally:
        os._exit(code)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _voluntary_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def _asleep(pid: int) -> None:
    """Until `pid` sleeps (it waits for its next call); bounded."""
    deadline = time.monotonic() + 10
    while _state(pid) != "S":
        assert time.monotonic() < deadline, "the worker never went back to waiting"
        time.sleep(0.0005)


@pytest.fixture
def worker() -> Iterator[tuple[socket.socket, int]]:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _serve(theirs)
    theirs.close()
    yield ours, pid
    ours.close()
    os.waitpid(pid, 0)


def test_frames_arrive_whole_and_in_order(worker: tuple[socket.socket, int]) -> None:
    """Frames written in one send, and a frame split over several, are each read whole."""
    sock, _ = worker
    sock.sendall(b"".join(len(p).to_bytes(4, "big") + p for p in (b"one", b"two")))
    big = b"x" * 300_000
    frame = len(big).to_bytes(4, "big") + big
    sock.sendall(frame[:3])
    time.sleep(0.01)
    sock.sendall(frame[3:])
    want = [b"reply:one", b"reply:two", b"reply:" + big]
    got = b""
    need = sum(4 + len(w) for w in want)
    while len(got) < need:
        got += sock.recv(1 << 20)
    parts, pos = [], 0
    while pos < len(got):
        size = int.from_bytes(got[pos : pos + 4], "big")
        parts.append(got[pos + 4 : pos + 4 + size])
        pos += 4 + size
    assert parts == want


def test_reading_the_reply_does_not_wake_the_waiting_worker(
    worker: tuple[socket.socket, int],
) -> None:
    """The kernel's write-space wake-up, when the gateway reads a reply, passes by a worker
    waiting for its next call: it sleeps through it (one wake-up per call, not two)."""
    sock, pid = worker
    spurious = 0
    for _ in range(20):
        send_frames(sock, b"call")
        sock.recv(1, socket.MSG_PEEK)  # the reply is there
        _asleep(pid)  # and the worker waits for the next call
        before = _voluntary_switches(pid)
        sock.recv(65536)  # frees the reply's buffer: the write-space wake-up
        time.sleep(0.005)  # a worker woken by it runs, finds nothing, sleeps again
        _asleep(pid)
        spurious += _voluntary_switches(pid) - before
    assert spurious == 0


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_messages_of_three_frames_are_read_whole_however_they_are_split(piece: int) -> None:
    """A warm call's message (token, context, event) comes back whole and in order from
    `frames(3)`, whether the stream arrives a byte at a time or many messages at once;
    the reader's `frame` then reads on from where it stopped."""
    messages = [(b"%016d" % i, b'{"call": %d}' % i, b"e" * (i * 3000)) for i in range(6)]
    stream = b"".join(len(p).to_bytes(4, "big") + p for m in messages for p in m)
    stream += (3).to_bytes(4, "big") + b"end"
    ours, theirs = socket.socketpair()

    def write() -> None:
        for i in range(0, len(stream), piece):
            ours.sendall(stream[i : i + piece])

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reader = FrameReader(theirs)
        assert [tuple(reader.frames(3)) for _ in messages] == messages
        assert reader.frame() == b"end"
    finally:
        writer.join()
        ours.close()
        theirs.close()
