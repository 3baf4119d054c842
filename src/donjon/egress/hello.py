"""A TLS tunnel's ClientHellos, each checked against the CONNECT host before it goes up.

A client sends its first ClientHello in the clear, and a second one, also in the clear,
when the server answers with a HelloRetryRequest (TLS 1.3, RFC 8446 section 4.1.4): a
server acts on the second hello's server name (OpenSSL's name callback runs again, and a
front end picks its virtual host there). So the second is checked as the first is. Until
the server has answered the first hello, the client's further bytes wait in the proxy
(`HelloWatch`): a client that sends its second hello at once, before any retry request,
cannot slip it past; a client has nothing else to send before that answer but 0-RTT
early data, which is then held one round trip.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from donjon.egress.addresses import parse_ip_literal
from donjon.egress.context import Refused
from donjon.egress.http import ProxyRequest
from donjon.egress.sni import (
    ClientHelloIncomplete,
    EncryptedServerName,
    NotClientHello,
    read_client_hello,
)

__all__ = ["HelloWatch", "client_hello", "starts_tls"]

#: Seconds for a ClientHello; its bytes at most; what one read takes.
HELLO_TIMEOUT_S = 10.0
MAX_HELLO_BYTES = 64 * 1024
CHUNK = 64 * 1024
#: The first byte of a TLS handshake record (RFC 8446 section 5.1).
_TLS_HANDSHAKE = 0x16
_SERVER_HELLO = 2
#: The random of a ServerHello that is a HelloRetryRequest (RFC 8446 section 4.1.3).
_RETRY_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
#: A ServerHello's record header, handshake header, version and random: what tells a retry.
_ANSWER_PREFIX = 5 + 4 + 2 + 32
#: The ChangeCipherSpec record a TLS 1.3 client may send before its second hello (D.4).
_CHANGE_CIPHER_SPEC = b"\x14\x03\x03\x00\x01\x01"


def starts_tls(first: bytes) -> bool:
    """Do a tunnel's first bytes open a TLS handshake record (22, then version 3.x)? A TLS
    server refuses any other first record, so anything else is not TLS."""
    return first[:1] == bytes([_TLS_HANDSHAKE]) and first[1:2] in (b"", b"\x03")


async def client_hello(
    reader: asyncio.StreamReader, request: ProxyRequest, start: bytes = b""
) -> tuple[bytes, bytes]:
    """The ClientHello the client sends into the tunnel (beginning with `start`, already
    read), its SNI checked against the host: (its records, what the client sent after).

    Read into one growing buffer (a chunk at a time is appended, not the whole copied)."""
    data = bytearray(start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HELLO_TIMEOUT_S
    while True:
        if data:
            try:
                sni, end = read_client_hello(data)
                break
            except ClientHelloIncomplete:
                if len(data) >= MAX_HELLO_BYTES:
                    raise Refused("the TLS ClientHello is too large") from None
            except NotClientHello:
                raise Refused(f"CONNECT to port {request.port} must carry TLS") from None
            except EncryptedServerName:
                raise Refused(
                    "the TLS ClientHello encrypts the server name it asks for (ECH): the"
                    f" proxy cannot check it is {request.host}"
                ) from None
        data += await _read(reader, deadline, "no TLS ClientHello in time")
    literal = parse_ip_literal(request.host) is not None
    if sni is None:
        if not literal:
            raise Refused(f"the TLS ClientHello names no server (SNI), expected {request.host}")
    elif sni.endswith(".") or sni.lower() != request.host:
        # Exactly the host, in any case: no trailing dot (RFC 6066), which a front end
        # routing by the name as sent would not match to the granted host.
        raise Refused(f"the TLS SNI {sni[:255]!r} differs from the CONNECT host")
    return bytes(data[:end]), bytes(data[end:])


async def _read(reader: asyncio.StreamReader, deadline: float, late: str) -> bytes:
    """The client's next bytes before `deadline`; Refused (`late`) after it or at its end."""
    loop = asyncio.get_running_loop()
    try:
        chunk = await asyncio.wait_for(reader.read(CHUNK), max(0.0, deadline - loop.time()))
    except TimeoutError:
        raise Refused(late) from None
    if not chunk:
        raise Refused("the tunnel closed before a TLS ClientHello")
    return chunk


@dataclass(eq=False)
class HelloWatch:
    """A TLS tunnel from its first ClientHello to the server's answer: what the client sent
    after the hello waits here until the server has answered (`server_bytes` sees the
    answer's first bytes); a HelloRetryRequest then makes the client's next hello pass
    `client_hello` too (`after_answer`)."""

    request: ProxyRequest
    #: The client's bytes after its first hello, not yet sent upstream.
    held: bytes = b""
    #: The first hello went upstream: the server's next bytes are its answer.
    sent: bool = False
    retry: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    _answer: bytearray = field(default_factory=bytearray)

    def hello_sent(self, rest: bytes) -> None:
        """The first hello is going upstream now; `rest` came after it."""
        self.held, self.sent = rest, True

    def server_bytes(self, chunk: bytes) -> None:
        """Bytes from the server, on their way to the client (b"": it closed)."""
        if not self.sent or self.answered.is_set():
            return
        self._answer += chunk[: _ANSWER_PREFIX - len(self._answer)]
        answer = self._answer
        if chunk and len(answer) < _ANSWER_PREFIX and answer[0] == _TLS_HANDSHAKE:
            return  # a ServerHello's first bytes: read on
        self.retry = (
            len(answer) == _ANSWER_PREFIX
            and answer[5] == _SERVER_HELLO
            and answer[11:] == _RETRY_RANDOM
        )
        self.answered.set()

    async def after_answer(self, reader: asyncio.StreamReader) -> bytes:
        """Once the server has answered: the bytes held since the first hello, and, when it
        asked for a retry, the client's second hello, checked, with its ChangeCipherSpec."""
        await self.answered.wait()
        data, self.held = self.held, b""
        if not self.retry:
            return data
        deadline = asyncio.get_running_loop().time() + HELLO_TIMEOUT_S
        while not data or (
            len(data) < len(_CHANGE_CIPHER_SPEC) and _CHANGE_CIPHER_SPEC.startswith(data)
        ):
            data += await _read(reader, deadline, "no second TLS ClientHello in time")
        # One ChangeCipherSpec at most (a client sends one), then the hello.
        spec = _CHANGE_CIPHER_SPEC if data.startswith(_CHANGE_CIPHER_SPEC) else b""
        second, rest = await client_hello(reader, self.request, data[len(spec) :])
        return spec + second + rest
