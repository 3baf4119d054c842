"""The server name (SNI) of a TLS ClientHello, read from the first bytes a client sends.

The proxy compares it with the CONNECT host before it relays a byte: a client that
CONNECTs to a granted host but asks the server, inside TLS, for another name (domain
fronting on a shared front end) is refused. Only what RFC 8446 section 4.1.2 and RFC
6066 section 3 define is read; a handshake message split over several TLS records
is put back together. Anything malformed is `NotClientHello`: the proxy refuses it.
A hello with Encrypted Client Hello (or the older encrypted SNI) carries the granted name
outside and the one the server acts on encrypted inside, where it cannot be compared:
it is `EncryptedServerName`, and the proxy refuses it.
"""

from __future__ import annotations

__all__ = [
    "MAX_CLIENT_HELLO",
    "MAX_HELLO_RECORDS",
    "ClientHelloIncomplete",
    "EncryptedServerName",
    "NotClientHello",
    "client_hello_sni",
    "read_client_hello",
]

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0
#: encrypted_client_hello (RFC 9849) and the draft encrypted_server_name it replaced.
_ENCRYPTED_NAMES = frozenset({0xFE0D, 0xFFCE})
_HOST_NAME = 0
_RECORD_HEADER = 5
_MAX_RECORD = 2**14 + 2048
#: The largest ClientHello (handshake body) the parser reads; a bigger one is refused.
MAX_CLIENT_HELLO = 64 * 1024
#: The most TLS records a ClientHello may span. A client sends its hello in one record
#: (records carry 16 KiB; the largest hello read here needs 5); the proxy parses what it
#: has read after every read, so a hello trickled in one-byte records made each parse
#: walk thousands of records on the node's event loop (tests/security/test_attack_hello_trickle.py).
MAX_HELLO_RECORDS = 16


class ClientHelloIncomplete(Exception):
    """More bytes are needed: read more (up to a cap) and try again."""


class NotClientHello(Exception):
    """The bytes are not a well-formed TLS ClientHello."""


class EncryptedServerName(Exception):
    """A well-formed ClientHello that encrypts the server name it asks for (ECH, ESNI):
    the name in its server_name extension is not the one the server acts on."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NotClientHello("a field runs past the end of the ClientHello")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _handshake(data: bytes | bytearray) -> tuple[bytes, int]:
    """The first handshake message's body, from as many TLS records as it spans, and the
    bytes of `data` those records take."""
    message = bytearray()
    pos = 0
    records = 0
    needed: int | None = None
    while needed is None or len(message) < needed:
        if len(data) - pos < _RECORD_HEADER:
            raise ClientHelloIncomplete
        kind, major, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 3 : pos + 5])
        if kind != _HANDSHAKE or major != 3 or length == 0 or length > _MAX_RECORD:
            raise NotClientHello("not a TLS handshake record")
        records += 1
        if records > MAX_HELLO_RECORDS:
            raise NotClientHello(f"the ClientHello spans more than {MAX_HELLO_RECORDS} records")
        if len(data) - pos - _RECORD_HEADER < length:
            raise ClientHelloIncomplete
        message += data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if needed is None and len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise NotClientHello("the first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(message[1:4])
            if needed - 4 > MAX_CLIENT_HELLO:
                raise NotClientHello("the ClientHello is larger than the proxy reads")
    if len(message) != needed:
        # Another handshake message shares the record: no client sends that before
        # the server's answer, so it is refused rather than read around.
        raise NotClientHello("data follows the ClientHello in its records")
    return bytes(message[4:needed]), pos


def client_hello_sni(data: bytes | bytearray) -> str | None:
    """The host name the ClientHello at the start of `data` asks for (`read_client_hello`)."""
    return read_client_hello(data)[0]


def read_client_hello(data: bytes | bytearray) -> tuple[str | None, int]:
    """The host name the ClientHello at the start of `data` asks for; None if it names none.

    `ClientHelloIncomplete` if `data` ends before the hello does; `NotClientHello` if the
    bytes are not a well-formed hello (or name a host in more than one entry);
    `EncryptedServerName` if it is one that encrypts its real server name. With the name,
    the bytes of `data` the hello's records take (what follows is not the hello's).
    """
    message, end = _handshake(data)
    body = _Reader(message)
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # legacy_session_id
    suites = body.vector(2)
    if not suites or len(suites) % 2:
        raise NotClientHello("malformed cipher suites")
    if not body.vector(1):  # legacy_compression_methods
        raise NotClientHello("no compression methods")
    if body.left == 0:
        return None, end  # no extensions at all
    extensions = _Reader(body.vector(2))
    if body.left:
        raise NotClientHello("bytes after the extensions")
    seen: set[int] = set()
    name: str | None = None
    while extensions.left:
        kind = extensions.uint(2)
        value = extensions.vector(2)
        if kind in seen:
            raise NotClientHello(f"extension {kind} appears twice")
        seen.add(kind)
        if kind == _SERVER_NAME:
            name = _server_name(value)
    if seen & _ENCRYPTED_NAMES:
        raise EncryptedServerName("the ClientHello encrypts its server name")
    return name, end


def _server_name(value: bytes) -> str | None:
    reader = _Reader(value)
    names = _Reader(reader.vector(2))
    if reader.left:
        raise NotClientHello("bytes after the server name list")
    found: str | None = None
    while names.left:
        kind = names.uint(1)
        raw = names.vector(2)
        if kind != _HOST_NAME:
            continue
        if found is not None:
            raise NotClientHello("more than one host name in server_name")
        if not raw or not raw.isascii() or any(b <= 0x20 or b == 0x7F for b in raw):
            raise NotClientHello("the server name is not an ASCII host name")
        found = raw.decode("ascii")
    return found
