"""Frames between the node and its audit writer process (one socketpair, both ways).

A frame is a 4-byte big-endian body length, a 1-byte kind and the body.
Node to writer: INIT (once: JSON of the writer's configuration and keys),
RECORDS (entries of audit/entry.py joined by newlines). Writer to node: READY
(once: the log's size), COMMITTED (count, first seq, ts, seconds: the oldest
`count` entries not yet answered are durable), FAILED (count, then the reason:
they were not written; STORAGE_FULL when the storage had no room), ERROR (at
start: why the writer cannot run).
Answers come in the order the entries were sent: one socket, one writer.
"""

from __future__ import annotations

import socket
import struct

from donjon.audit.errors import AuditError

__all__ = [
    "COMMITTED",
    "ERROR",
    "FAILED",
    "INIT",
    "READY",
    "RECORDS",
    "STORAGE_FULL",
    "FrameReader",
    "frame",
    "read_frame",
]

INIT, RECORDS, READY, COMMITTED, FAILED, ERROR = 1, 2, 3, 4, 5, 6
#: The reason of a FAILED frame whose transaction failed for want of space.
STORAGE_FULL = "StorageFull"
HEADER = struct.Struct("!IB")
COMMITTED_BODY = struct.Struct("!IQdd")
COUNT = struct.Struct("!I")
SIZE = struct.Struct("!Q")
#: No frame is larger (a batch of records with their logs is far below).
MAX_FRAME = 1 << 30


def frame(kind: int, body: bytes) -> bytes:
    return HEADER.pack(len(body), kind) + body


class FrameReader:
    """Splits a byte stream into frames, keeping a partial one for the next `feed`."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        at = 0
        end = len(buf)
        while end - at >= HEADER.size:
            size, kind = HEADER.unpack_from(buf, at)
            if size > MAX_FRAME:
                raise AuditError(
                    f"an audit writer frame of {size} bytes is too large",
                    hint="the writer's socket carries only Donjon's own frames",
                )
            if end - at - HEADER.size < size:
                break
            start = at + HEADER.size
            out.append((kind, bytes(buf[start : start + size])))
            at = start + size
        if at:
            del buf[:at]
        return out


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One whole frame from a blocking socket (the start-up handshake)."""
    reader = FrameReader()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise AuditError(
                "the audit writer's socket closed during its start",
                hint="the server log says why (the writer process logs there)",
            )
        frames = reader.feed(data)
        if frames:
            return frames[0]
