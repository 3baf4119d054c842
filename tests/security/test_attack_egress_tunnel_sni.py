"""Attack: a TLS tunnel through the egress proxy whose ClientHello names another server
than the one the grant and the CONNECT name.

A server name with trailing dots (`api.donjon.test....`): the proxy compared the name
with every trailing dot stripped, so the hello reached the server naming a host no
grant names, which a front end routing by the exact name sends to its default virtual
host (RFC 6066: a server name has no trailing dot). The tunnel is now closed before the
hello goes upstream and audited as denied with the call's function and destination.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from egress_support import API, ProxyRig, rig


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyRig]:
    with rig(tmp_path) as r:
        yield r


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


def tunnel(port: int, target: str, data: bytes) -> tuple[bytes, bytes]:
    """CONNECT `target`, send `data` into the tunnel; (the proxy's answer, what came back)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                return answer, b""
            answer += chunk
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while chunk := s.recv(65536):
            back += chunk
    return answer, back


@pytest.mark.parametrize("server_name", [f"{API}.", f"{API}....", f"{API.upper()}.."])
def test_a_server_name_with_trailing_dots_is_not_the_granted_host(
    proxy: ProxyRig, server_name: str
) -> None:
    """SNI `api.donjon.test....` on a tunnel to api.donjon.test:443: closed, never relayed."""
    sandbox = proxy.open([f"{API}:443"])
    token = proxy.begin(sandbox, "req-dots")
    answer, back = tunnel(proxy.relay(sandbox, token), f"{API}:443", hello(server_name))
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert back == b"", back[:40]  # no ServerHello: the hello never reached the server
    proxy.run(sandbox.end_call(token))
    [record] = proxy.records()
    detail = record["detail"]
    assert record["outcome"] == "denied" and "SNI" in detail["reason"], record
    assert detail["function"] == "fn" and detail["destination"] == f"{API}:443"
    assert detail["request_id"] == "req-dots"


def test_the_granted_name_in_another_case_still_passes(proxy: ProxyRig) -> None:
    """Server names compare case-insensitively, as DNS names do: `API.DONJON.TEST` is it."""
    sandbox = proxy.open([f"{API}:443"])
    token = proxy.begin(sandbox)
    _, back = tunnel(proxy.relay(sandbox, token), f"{API}:443", hello(API.upper()))
    assert back.startswith(b"\x16\x03"), back[:40]  # the server's ServerHello
