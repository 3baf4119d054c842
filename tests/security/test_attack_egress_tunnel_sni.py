"""Attack: a TLS tunnel through the egress proxy whose ClientHello names another server
than the one the grant and the CONNECT name.

Two ways past the SNI check, both relaying the hello to the granted address:

- a server name with trailing dots (`api.donjon.test....`): the proxy compared the
  name with every trailing dot stripped, so the hello reached the server naming a host
  no grant names, which a front end routing by the exact name sends to its default
  virtual host (RFC 6066: a server name has no trailing dot);
- a tunnel to a granted port other than 443 (8443, 993, 6380...): the ClientHello was
  not read at all, so a function granted `api:8443` could ask the server at that address
  for any other name it serves (domain fronting on a shared front end);
- a hello with Encrypted Client Hello: the granted name outside, the name the server
  acts on encrypted inside, where the proxy cannot read it (a front end that supports
  ECH, a CDN's, serves every site it fronts to whoever names the granted one outside).
- a second hello after a TLS 1.3 HelloRetryRequest, in the clear like the first but
  never read: the server acts on its name, so the first named the granted host and the
  second another.

Each refused tunnel is closed before the hello goes upstream and audited as denied
with the call's function and destination.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egress_support import API, OTHER, ProxyRig, connect_head, rig
from sec_support import Listener


class Sink(Listener):
    """A TCP server on the rig's address that greets each connection (as SMTP or MySQL
    servers speak first), keeps every byte it is sent and answers each read (a TLS
    client's further bytes wait in the proxy for the server's answer to its hello)."""

    GREETING = b"220 sink ready\r\n"

    def __init__(self, address: str) -> None:
        self.received = bytearray()
        self._lock = threading.Lock()
        super().__init__(address)

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(self.GREETING)
            while data := conn.recv(65536):
                with self._lock:
                    self.received += data
                conn.sendall(b"+OK\r\n")

    def seen(self) -> bytes:
        with self._lock:
            return bytes(self.received)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyRig]:
    with rig(tmp_path) as r:
        yield r


@pytest.fixture
def sink(proxy: ProxyRig) -> Iterator[Sink]:
    s = Sink(proxy.address)
    try:
        yield s
    finally:
        s.close()


def hello(server_name: str) -> bytes:
    """OpenSSL's first flight asking for `server_name` (any bytes: written over a carrier
    name of the same length, so every length field stays right)."""
    carrier = "x" * max(0, len(server_name) - len(API)) + API
    assert len(carrier) == len(server_name)
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=carrier)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    first = outgoing.read()
    assert first.count(carrier.encode()) == 1
    return first.replace(carrier.encode(), server_name.encode())


def with_extension(first: bytes, kind: int, data: bytes) -> bytes:
    """`first` (one TLS record holding a ClientHello) with one more extension at its end."""
    extension = struct.pack("!HH", kind, len(data)) + data
    record, body = first[:5], bytearray(first[5:])
    pos = 4 + 2 + 32
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos : pos + 2])  # cipher suites
    pos += 1 + body[pos]  # compression methods
    total = int.from_bytes(body[pos : pos + 2]) + len(extension)
    body[pos : pos + 2] = total.to_bytes(2, "big")
    body += extension
    body[1:4] = (len(body) - 4).to_bytes(3, "big")
    return record[:3] + len(body).to_bytes(2, "big") + bytes(body)


def tunnel(port: int, target: str, data: bytes) -> tuple[bytes, bytes]:
    """CONNECT `target`, send `data` into the tunnel; (the proxy's answer, what came back)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        answer = connect_head(s, target)
        if b"\r\n\r\n" not in answer:
            return answer, b""
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while chunk := s.recv(65536):
            back += chunk
    return answer, back


def through(
    proxy: ProxyRig, grant: str, data: bytes, request_id: str = "req-1"
) -> tuple[bytes, bytes]:
    """One call granted `grant` tunnels `data` to it, then ends: (the proxy's answer to
    CONNECT, what came back)."""
    sandbox = proxy.open([grant])
    token = proxy.begin(sandbox, request_id)
    try:
        return tunnel(proxy.relay(sandbox, token), grant, data)
    finally:
        proxy.run(sandbox.end_call(token))


def denied_detail(proxy: ProxyRig, request_id: str) -> dict[str, Any]:
    """The call's first denied egress record's detail (the test's call named `request_id`)."""
    denied = [r for r in proxy.records() if r["outcome"] == "denied"]
    assert denied, proxy.records()
    detail: dict[str, Any] = denied[0]["detail"]
    assert detail["function"] == "fn" and detail["request_id"] == request_id, detail
    return detail


@pytest.mark.parametrize("server_name", [f"{API}.", f"{API}....", f"{API.upper()}.."])
def test_a_server_name_with_trailing_dots_is_not_the_granted_host(
    proxy: ProxyRig, server_name: str
) -> None:
    """SNI `api.donjon.test....` on a tunnel to api.donjon.test:443: closed, never relayed."""
    answer, back = through(proxy, f"{API}:443", hello(server_name), "req-dots")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert back == b"", back[:40]  # no ServerHello: the hello never reached the server
    detail = denied_detail(proxy, "req-dots")
    assert "SNI" in detail["reason"] and detail["destination"] == f"{API}:443"


def test_the_granted_name_in_another_case_still_passes(proxy: ProxyRig) -> None:
    """Server names compare case-insensitively, as DNS names do: `API.DONJON.TEST` is it."""
    _, back = through(proxy, f"{API}:443", hello(API.upper()))
    assert back.startswith(b"\x16\x03"), back[:40]  # the server's ServerHello


def test_a_tunnel_to_another_port_cannot_ask_for_another_server(
    proxy: ProxyRig, sink: Sink
) -> None:
    """CONNECT api:PORT (granted, not 443), then a ClientHello for other: closed, audited."""
    answer, _ = through(proxy, f"{API}:{sink.port}", hello(OTHER), "req-front")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert OTHER.encode() not in sink.seen()  # the server never heard the other name
    detail = denied_detail(proxy, "req-front")
    assert "SNI" in detail["reason"] and detail["destination"] == f"{API}:{sink.port}"


def test_a_tunnel_to_another_port_still_carries_its_own_protocol(
    proxy: ProxyRig, sink: Sink
) -> None:
    """The same tunnel with the granted name in its hello, or with no TLS at all, is relayed;
    a server that speaks first is heard before the client sends a byte."""
    sandbox = proxy.open([f"{API}:{sink.port}"])
    token = proxy.begin(sandbox)
    port = proxy.relay(sandbox, token)
    tunnel(port, f"{API}:{sink.port}", hello(API))
    tunnel(port, f"{API}:{sink.port}", b"*1\r\n$4\r\nPING\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"CONNECT {API}:{sink.port} HTTP/1.1\r\n\r\n".encode())
        heard = b""
        while Sink.GREETING not in heard and (chunk := s.recv(4096)):
            heard += chunk  # the server's greeting arrives before the client says anything
    assert heard.endswith(Sink.GREETING), heard
    proxy.run(sandbox.end_call(token))
    seen = sink.seen()
    assert API.encode() in seen and b"PING" in seen, seen[:80]
    assert {r["outcome"] for r in proxy.records()} == {"allowed"}


#: An outer encrypted_client_hello (RFC 9849 draft-ietf-tls-esni): type 0 (outer), HPKE
#: KDF and AEAD, a config id, an encapsulated key and a payload that is the real hello.
OUTER_ECH = b"\x00" + struct.pack("!HHB", 1, 1, 7) + struct.pack("!H", 32) + b"k" * 32
OUTER_ECH += struct.pack("!H", 200) + b"p" * 200


@pytest.mark.parametrize("kind", [0xFE0D, 0xFFCE], ids=["ech", "esni"])
def test_a_hello_that_hides_its_server_name_is_refused(proxy: ProxyRig, kind: int) -> None:
    """The granted name outside, another encrypted inside (ECH, or the older ESNI): the
    proxy cannot check the name the server acts on, so the tunnel is closed, audited."""
    first = with_extension(hello(API), kind, OUTER_ECH)
    answer, back = through(proxy, f"{API}:443", first, "req-ech")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert back == b"", back[:40]  # no ServerHello: the hello never reached the server
    detail = denied_detail(proxy, "req-ech")
    assert "encrypt" in detail["reason"] and detail["destination"] == f"{API}:443"


def test_a_hello_with_another_unknown_extension_still_passes(proxy: ProxyRig) -> None:
    """The refusal is ECH's alone: an extension the proxy does not know is relayed."""
    first = with_extension(hello(API), 0xFAFA, b"")  # a GREASE value (RFC 8701)
    _, back = through(proxy, f"{API}:443", first)
    assert back.startswith(b"\x16\x03"), back[:40]  # the server's ServerHello


FRONT = "front.donjon.test"  # as long as OTHER: one name is written over the other
assert len(FRONT) == len(OTHER)


class RetryServer(Listener):
    """A TLS server that asks every client to retry its hello (it takes only P-256 key
    shares, Python's client offers X25519 first) and keeps each server name it was asked
    for, as a front end picking its virtual host by SNI does."""

    def __init__(self, address: str, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.set_ecdh_curve("prime256v1")
        self.names: list[str] = []
        self.context.sni_callback = self._named
        super().__init__(address)

    def _named(self, _tls: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.names.append(name or "")

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with contextlib.suppress(OSError), self.context.wrap_socket(conn, server_side=True):
            pass


def retried_handshake(
    proxy: ProxyRig, server: RetryServer, asked: str, before_second: bytes = b""
) -> bool:
    """A TLS handshake through the proxy to `server` whose client asks for `asked`, its
    first hello rewritten on the wire to ask for FRONT (and `before_second` sent before
    its second flight); whether it completed."""
    sandbox = proxy.open([f"{FRONT}:{server.port}"])
    token = proxy.begin(sandbox, "req-retry")
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client.wrap_bio(incoming, outgoing, server_hostname=asked)
    done = False
    with socket.create_connection(("127.0.0.1", proxy.relay(sandbox, token)), timeout=20) as s:
        s.sendall(f"CONNECT {FRONT}:{server.port} HTTP/1.1\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        for flight in range(4):
            try:
                tls.do_handshake()
                done = True
                break
            except ssl.SSLWantReadError:
                out = outgoing.read()
                if flight == 0:
                    out = out.replace(asked.encode(), FRONT.encode())
                elif flight == 1:
                    out = before_second + out
                s.sendall(out)
                data = s.recv(65536)
                if not data:
                    break
                incoming.write(data)
            except (ssl.SSLError, OSError):
                break
    proxy.run(sandbox.end_call(token))
    return done


@pytest.fixture
def retry_server(proxy: ProxyRig, tmp_path: Path) -> Iterator[RetryServer]:
    proxy.resolver.table[FRONT] = [proxy.address]
    server = RetryServer(proxy.address, proxy.ca, tmp_path / "key.pem")
    try:
        yield server
    finally:
        server.close()


def test_a_retried_hello_cannot_ask_for_another_server(
    proxy: ProxyRig, retry_server: RetryServer
) -> None:
    """TLS 1.3 HelloRetryRequest: the first hello names the granted host, the second
    (sent after the server's retry request, in the clear) names another. The server acts
    on the second; the proxy checks it too."""
    assert not retried_handshake(proxy, retry_server, OTHER)
    assert OTHER not in retry_server.names, retry_server.names  # never acted on the other
    assert retry_server.names == [FRONT], retry_server.names  # a retry was asked for
    denied = [r for r in proxy.records() if r["outcome"] == "denied"]
    assert denied and "SNI" in denied[0]["detail"]["reason"], proxy.records()


def test_a_retried_hello_for_the_same_server_completes(
    proxy: ProxyRig, retry_server: RetryServer
) -> None:
    """The same retry with the same name in both hellos: the handshake completes."""
    assert retried_handshake(proxy, retry_server, FRONT)
    assert retry_server.names == [FRONT, FRONT], retry_server.names


def test_a_retried_hello_behind_many_change_cipher_specs_is_refused(
    proxy: ProxyRig, retry_server: RetryServer
) -> None:
    """A client sends one ChangeCipherSpec before its second hello; a stream of them
    (each one the proxy would step over, on the node's event loop) is refused."""
    spec = b"\x14\x03\x03\x00\x01\x01"
    assert not retried_handshake(proxy, retry_server, FRONT, spec * 1000)
    assert retry_server.names == [FRONT], retry_server.names
    detail = denied_detail(proxy, "req-retry")
    assert "must carry TLS" in detail["reason"], detail
