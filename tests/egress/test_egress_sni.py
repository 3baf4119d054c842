"""`client_hello_sni`: the server name a real TLS client asks for, read before relaying."""

from __future__ import annotations

import contextlib
import functools
import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.egress.sni import (
    MAX_HELLO_RECORDS,
    ClientHelloIncomplete,
    EncryptedServerName,
    NotClientHello,
    client_hello_sni,
)

#: No deadline (a loaded 2-core machine), no example database written, the same examples
#: every run.
PROPERTY = settings(deadline=None, database=None, derandomize=True)


@functools.cache
def _hello(server_hostname: str | None) -> bytes:
    """The first flight Python's ssl module (OpenSSL) sends for `server_hostname`."""
    context = ssl.create_default_context()
    if server_hostname is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        return outgoing.read()
    raise AssertionError("the handshake cannot complete without a server")


def _records(message: bytes, sizes: list[int]) -> bytes:
    """`message` (a handshake message) split over TLS records of the given sizes."""
    out, pos = b"", 0
    for size in [*sizes, len(message)]:
        chunk = message[pos : pos + size]
        if chunk:
            out += b"\x16\x03\x01" + struct.pack("!H", len(chunk)) + chunk
        pos += len(chunk)
    return out


def _handshake(hello: bytes) -> bytes:
    return hello[5 : 5 + struct.unpack("!H", hello[3:5])[0]]


def _with_extensions(extensions: bytes) -> bytes:
    """A minimal ClientHello record carrying `extensions` (already encoded)."""
    body = b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(extensions)) + extensions
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return _records(message, [])


def _sni_extension(*names: bytes) -> bytes:
    entries = b"".join(b"\x00" + struct.pack("!H", len(n)) + n for n in names)
    value = struct.pack("!H", len(entries)) + entries
    return b"\x00\x00" + struct.pack("!H", len(value)) + value


def test_reads_the_name_a_real_client_sends() -> None:
    """OpenSSL's ClientHello for api.example.com names api.example.com."""
    assert client_hello_sni(_hello("api.example.com")) == "api.example.com"


def test_none_when_the_client_sends_no_name() -> None:
    """A hello without server_name (an IP address target) gives None."""
    assert client_hello_sni(_hello(None)) is None
    assert client_hello_sni(_hello("127.0.0.2")) is None


def test_a_hello_split_over_records_is_reassembled() -> None:
    """The same name is read when the hello is fragmented over several records."""
    message = _handshake(_hello("bucket.s3.example.com"))
    assert client_hello_sni(_records(message, [3, 50, 7])) == "bucket.s3.example.com"


def test_a_hello_in_more_records_than_the_cap_is_refused_at_the_first_extra_header() -> None:
    """A hello may span MAX_HELLO_RECORDS records; one more record header, complete or not,
    refuses it (a hello trickled in one-byte records made every read re-walk them all)."""
    message = _handshake(_hello("bucket.s3.example.com"))
    most = _records(message, [1] * (MAX_HELLO_RECORDS - 1))
    assert client_hello_sni(most) == "bucket.s3.example.com"
    too_many = _records(message, [1] * MAX_HELLO_RECORDS)
    with pytest.raises(NotClientHello):
        client_hello_sni(too_many)
    with pytest.raises(NotClientHello):  # the extra record's header alone is enough
        client_hello_sni(too_many[: len(_records(message[:MAX_HELLO_RECORDS], [1] * 99)) + 5])


def test_every_short_prefix_asks_for_more() -> None:
    """Each truncation of a real hello is ClientHelloIncomplete, never a wrong answer."""
    hello = _hello("api.example.com")
    for cut in range(len(hello)):
        with pytest.raises(ClientHelloIncomplete):
            client_hello_sni(hello[:cut])


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        b"\x16\x02\x00\x00\x05hello",
        b"\x17\x03\x03\x00\x05hello",
        b"\x16\x03\x01\x00\x00",
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",
    ],
)
def test_what_is_not_a_client_hello_is_refused(data: bytes) -> None:
    """Plain HTTP, other record types, an empty record, a ServerHello."""
    with pytest.raises(NotClientHello):
        client_hello_sni(data)


def test_two_host_names_are_refused() -> None:
    """A server_name list with two host names (which one would the server use?) is refused."""
    with pytest.raises(NotClientHello):
        client_hello_sni(_with_extensions(_sni_extension(b"api.example.com", b"evil.net")))


def test_a_repeated_server_name_extension_is_refused() -> None:
    """Two server_name extensions are refused, not read first-or-last."""
    ext = _sni_extension(b"api.example.com") + _sni_extension(b"evil.net")
    with pytest.raises(NotClientHello):
        client_hello_sni(_with_extensions(ext))


@pytest.mark.parametrize("name", [b"api.example.com\x00.evil.net", b"a b", "é.com".encode()])
def test_a_name_with_control_or_non_ascii_bytes_is_refused(name: bytes) -> None:
    """A name with NUL, space or non-ASCII bytes is not a host name."""
    with pytest.raises(NotClientHello):
        client_hello_sni(_with_extensions(_sni_extension(name)))


def test_a_handcrafted_hello_is_read() -> None:
    """The minimal hand-built hello with one name gives that name."""
    assert client_hello_sni(_with_extensions(_sni_extension(b"api.example.com"))) == (
        "api.example.com"
    )


@PROPERTY
@given(st.binary(max_size=600))
def test_any_bytes_give_a_name_or_one_of_the_parsers_errors(data: bytes) -> None:
    """Arbitrary input never raises anything but the parser's own exceptions."""
    try:
        result = client_hello_sni(data)
    except (ClientHelloIncomplete, NotClientHello, EncryptedServerName):
        return
    assert result is None or isinstance(result, str)


@PROPERTY
@given(st.binary(min_size=1, max_size=300))
def test_mutated_hellos_give_a_name_or_one_of_the_parsers_errors(noise: bytes) -> None:
    """A real hello with bytes overwritten never crashes the parser."""
    hello = bytearray(_hello("api.example.com"))
    for i, b in enumerate(noise):
        hello[(i * 7919) % len(hello)] = b
    with contextlib.suppress(ClientHelloIncomplete, NotClientHello, EncryptedServerName):
        client_hello_sni(bytes(hello))


@pytest.mark.parametrize("kind", [0xFE0D, 0xFFCE])
def test_a_hello_that_encrypts_its_server_name_is_told_apart(kind: int) -> None:
    """ECH (or the draft ESNI) beside a plain server_name: the plain name is not the one
    the server acts on, so the parser says so rather than return it."""
    extensions = _sni_extension(b"api.example.com") + struct.pack("!HH", kind, 1) + b"\x00"
    with pytest.raises(EncryptedServerName):
        client_hello_sni(_with_extensions(extensions))
