"""Invariant 2, network: with no egress granted, a function reaches nothing at all.

Each listener here is real and on the host; each attack is run from inside
the sandbox in both isolation modes, and the listener checks that nothing arrived.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from harness import LiveNode
from sec_support import ATTACKERS, PROBES, attack


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    """A TCP server on all of the host's addresses, loopback included."""
    with socket.create_server(("0.0.0.0", 0)) as server:  # noqa: S104 - the attack target
        server.setblocking(False)
        yield server


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        yield server


def _nothing_arrived(server: socket.socket) -> bool:
    """Whether nothing is queued on `server` (loopback delivery happens before the call returns)."""
    try:
        if server.type == socket.SOCK_STREAM:
            conn, _ = server.accept()
            conn.close()
        else:
            server.recv(4096)
    except BlockingIOError:
        return True
    return False


def _host_address() -> str:
    """The host's own non-loopback address (the one a default route would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: never sent, only routed
        except OSError:
            pytest.skip("the host has no non-loopback IPv4 address")
        address: str = s.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("the host has no non-loopback IPv4 address")
    return address


@PROBES
def test_cannot_connect_to_the_gateways_own_port(node: LiveNode, fn: str) -> None:
    """The gateway listening on host loopback is not reachable from the sandbox."""
    port = urlsplit(node.url).port
    assert port is not None
    r = node.invoke(fn, {"op": "connect", "host": "127.0.0.1", "port": port})
    assert r.json()["connected"] is False


@PROBES
def test_cannot_connect_to_host_ssh_port(node: LiveNode, fn: str) -> None:
    """127.0.0.1:22 of the host (sshd, if any) is not reachable."""
    r = node.invoke(fn, {"op": "connect", "host": "127.0.0.1", "port": 22})
    assert r.json()["connected"] is False


@PROBES
def test_cannot_connect_to_a_loopback_server_the_test_started(
    node: LiveNode, fn: str, tcp_listener: socket.socket
) -> None:
    """A TCP server on host loopback sees no connection from the sandbox."""
    port = tcp_listener.getsockname()[1]
    r = node.invoke(fn, {"op": "connect", "host": "127.0.0.1", "port": port})
    assert r.json()["connected"] is False
    assert _nothing_arrived(tcp_listener)


@ATTACKERS
def test_cannot_connect_to_the_hosts_external_address(
    node: LiveNode, fn: str, tcp_listener: socket.socket
) -> None:
    """The host's own network address is unreachable as well."""
    port = tcp_listener.getsockname()[1]
    result = attack(node, fn, "connect", host=_host_address(), port=port)
    assert result["connected"] is False
    assert _nothing_arrived(tcp_listener)


@ATTACKERS
def test_udp_datagrams_do_not_leave_the_sandbox(
    node: LiveNode, fn: str, udp_listener: socket.socket
) -> None:
    """A datagram sent to a UDP server on host loopback never arrives."""
    port = udp_listener.getsockname()[1]
    attack(node, fn, "connect", proto="udp", host="127.0.0.1", port=port, payload="leak")
    assert _nothing_arrived(udp_listener)


def _dns_answer(query: bytes) -> bytes:
    """A minimal DNS response to `query`: one A record, 10.9.8.7."""
    header = query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x01\x00\x00\x00\x00"
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    question = query[12 : end + 5]
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 9, 8, 7])
    return header + question + answer


@ATTACKERS
def test_dns_resolution_fails(node: LiveNode, fn: str) -> None:
    """Names do not resolve, and a resolver on the host's 127.0.0.1:53 receives no query."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dns:
        try:
            dns.bind(("127.0.0.1", 53))
        except OSError:
            pytest.skip("127.0.0.1:53 is taken on this host")
        dns.setblocking(False)
        names = ["sec-attack.example", "localhost", socket.gethostname(), "pypi.org"]
        result = attack(node, fn, "resolve", names=names)
        queries = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                query, peer = dns.recvfrom(512)
                dns.sendto(_dns_answer(query), peer)
                queries += 1
    assert queries == 0
    resolved = {name: r for name, r in result.items() if not str(r).startswith("error")}
    assert resolved == {}


@ATTACKERS
def test_sees_no_host_interfaces_and_cannot_open_raw_sockets(node: LiveNode, fn: str) -> None:
    """Only a private loopback exists (no host NIC); AF_PACKET and raw IP sockets are refused."""
    result = attack(node, fn, "interfaces")
    assert result["interfaces"] in (["lo"], "EPERM", "EAFNOSUPPORT")
    assert result["net_dev"] == ["lo"]
    assert result["packet"] != "opened"
    assert result["raw_ip"] != "opened"
