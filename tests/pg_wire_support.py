"""A hostile PostgreSQL server for tests: just enough of the wire protocol (version 3)
for libpq to connect and a trigger's listener to take its lock and LISTEN, then
whatever `mode` says, on a free loopback port, in a thread of its own.

Modes (what the server does once the listener has sent LISTEN, unless said otherwise):
``huge_length`` declares a notification of 2 GiB and sends its bytes; ``huge_payload``
sends one well-formed notification whose payload is `HUGE` bytes; ``huge_rows`` answers
the lock's query with rows that never end; ``flood`` sends small notifications for ever;
``mute_listen`` never answers the LISTEN; ``cleartext`` asks for the password in clear
instead of letting the client in; ``gss`` asks for Kerberos (GSSAPI) authentication and
keeps what comes back in `passwords`; ``tls`` takes TLS (`self_signed` makes its certificate)
and asks for the client's certificate, which it keeps in `client_certs`. `sent` counts
the bytes of the attack each connection got to send before the client closed it;
`passwords` holds what clients sent as their password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from donjon.gateway.tls import create_self_signed
from harness import free_port

__all__ = ["HUGE", "HostilePostgres", "self_signed"]

#: The size of what the server sends as one message (never held whole: a chunk at a time).
HUGE = 256 << 20
_CHUNK = 1 << 20
_SSL_REQUEST, _GSS_REQUEST = 80877103, 80877104


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _ready() -> bytes:
    status = [(b"server_version", b"16.0"), (b"client_encoding", b"UTF8")]
    status += [(b"standard_conforming_strings", b"on"), (b"integer_datetimes", b"on")]
    out = _message(b"R", struct.pack("!I", 0)) + _message(b"K", struct.pack("!II", 4242, 7))
    for name, value in status:
        out += _message(b"S", name + b"\0" + value + b"\0")
    return out + _message(b"Z", b"I")


def _one_row(oid: int, value: bytes, tag: bytes) -> bytes:
    field = b"x\0" + struct.pack("!IhIhih", 0, 0, oid, -1, -1, 0)
    described = _message(b"T", struct.pack("!h", 1) + field)
    row = _message(b"D", struct.pack("!hI", 1, len(value)) + value)
    return described + row + _message(b"C", tag + b"\0")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for loopback that is its own CA, and its key (mode 0600, as libpq
    wants a client key): a ``tls`` server's, or a node's client certificate."""
    cert_path, key_path = directory / "postgresql.crt", directory / "postgresql.key"
    create_self_signed(cert_path, key_path)
    return cert_path, key_path


def _exactly(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) < n:
        raise OSError("the client hung up")
    return data


def _notification(payload: bytes) -> bytes:
    return _message(b"A", struct.pack("!I", 4242) + b"orders\0" + payload + b"\0")


class HostilePostgres:
    """A server on 127.0.0.1:`port` that lets any client in and then misbehaves."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent: list[int] = []
        self.passwords: list[bytes] = []
        self.connections = 0
        self.client_certs: list[bytes] = []
        #: The certificate and key files of a ``tls`` server (its own CA too).
        self.tls: tuple[Path, Path] | None = None
        self._sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = int(self._sock.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def dsn(self, extra: str = "", with_password: bool = True) -> str:
        """A DSN naming this server, with the password pw-hunter2 or none."""
        secret = " password=pw-hunter2" if with_password else ""
        return f"host=127.0.0.1 port={self.port} dbname=orders user=app{secret} {extra}"

    def close(self) -> None:
        self._closed.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(60)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
            with contextlib.suppress(OSError):  # the client went away
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        reader: BinaryIO = conn.makefile("rb")
        conn = self._start(conn, reader)
        with conn:  # a TLS socket of its own, if it took TLS
            self._answer(conn, conn.makefile("rb"))

    def _answer(self, conn: socket.socket, reader: BinaryIO) -> None:
        text = b""
        while True:
            kind, body = self._read(reader)
            if kind == b"X":
                return
            if kind in (b"P", b"Q"):
                text = body
            if kind not in (b"S", b"Q"):
                continue
            answer = _message(b"1", b"") + _message(b"2", b"") if kind == b"S" else b""
            if b"pg_try_advisory_lock" in text:
                if self.mode == "huge_rows":
                    conn.sendall(answer + _message(b"T", struct.pack("!h", 1) + b"x\0" + bytes(18)))
                    self._stream(conn, iter(lambda: _message(b"D", b"\0\1\0\0\0\1t") * 4096, b""))
                    return
                conn.sendall(answer + _one_row(16, b"t", b"SELECT 1") + _message(b"Z", b"I"))
            elif text.startswith(b"LISTEN"):
                if self.mode == "mute_listen":
                    reader.read()  # until the client hangs up
                    return
                conn.sendall(answer + _message(b"C", b"LISTEN\0") + _message(b"Z", b"I"))
                self._attack(conn)
                return
            else:
                conn.sendall(answer + _one_row(23, b"1", b"SELECT 1") + _message(b"Z", b"I"))

    def _start(self, conn: socket.socket, reader: BinaryIO) -> socket.socket:
        """SSLRequest: refused, or taken by a ``tls`` server; GSSENCRequest: refused; the
        startup message: let in (or asked for the password in clear, ``cleartext``). The
        connection to go on with."""
        while True:
            (length,) = struct.unpack("!I", _exactly(reader, 4))
            body = _exactly(reader, length - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code not in (_SSL_REQUEST, _GSS_REQUEST):
                break
            if code == _SSL_REQUEST and self.tls is not None:
                conn.sendall(b"S")
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.tls[0])
                context.load_cert_chain(*self.tls)
                context.verify_mode = ssl.CERT_OPTIONAL
                conn = context.wrap_socket(conn, server_side=True)
                peer = conn.getpeercert(binary_form=True)
                if peer:
                    self.client_certs.append(peer)
                reader = conn.makefile("rb")
                continue
            conn.sendall(b"N")
        if self.mode == "gss":  # AuthenticationGSS: the client's Kerberos credentials
            conn.sendall(_message(b"R", struct.pack("!I", 7)))
            kind, body = self._read(reader)
            self.passwords.append(kind + body)
            return conn
        if self.mode == "cleartext":
            conn.sendall(_message(b"R", struct.pack("!I", 3)))
            kind, body = self._read(reader)
            if kind == b"p":
                self.passwords.append(body.rstrip(b"\0"))
        conn.sendall(_ready())
        return conn

    @staticmethod
    def _read(reader: BinaryIO) -> tuple[bytes, bytes]:
        head = _exactly(reader, 5)
        (length,) = struct.unpack("!I", head[1:])
        return head[:1], _exactly(reader, length - 4)

    def _attack(self, conn: socket.socket) -> None:
        if self.mode == "huge_length":
            conn.sendall(b"A" + struct.pack("!I", 0x7FFFFFF0) + struct.pack("!I", 4242))
            self._stream(conn, iter(lambda: b"x" * _CHUNK, b""))
        elif self.mode == "huge_payload":
            head = _notification(b"")[:-1]  # the payload's terminator sent last
            lead = b"A" + struct.pack("!I", len(head) - 1 + HUGE + 1) + head[5:]
            conn.sendall(lead)
            self._stream(conn, iter(lambda: b"x" * _CHUNK, b""), end=b"\0")
        elif self.mode == "flood":
            self._stream(conn, iter(lambda: _notification(b'{"n": 1}') * 4096, b""), limit=None)
        else:
            conn.recv(1)

    def _stream(
        self,
        conn: socket.socket,
        chunks: Iterator[bytes],
        end: bytes = b"",
        limit: int | None = HUGE,
    ) -> None:
        done = 0
        try:
            for chunk in chunks:
                if limit is not None and done >= limit:
                    break
                if self._closed.is_set():
                    break
                conn.sendall(chunk)
                done += len(chunk)
            conn.sendall(end)
            conn.recv(1)  # the client's hang-up
        finally:
            self.sent.append(done)
