"""Issue 12, point 3: calls of one function do not share a network namespace.

Before, every worker of a sandbox shared the sandbox's loopback: a call could
listen on 127.0.0.1 and a concurrent call (or the spare worker that serves a
later call) could connect to it. Each worker now has a network namespace of
its own (sandbox/runtime/network.py). Both isolation modes; concurrent warm
calls were in separate sandboxes, hence namespaces, already.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
from typing import Any

import httpx
import pytest

from harness import FUNCTIONS, LiveNode, free_port
from sec_support import attack

MODES = pytest.mark.parametrize("fn", ["sec-netns", "sec-netns-warm"])


@pytest.fixture(scope="module", autouse=True)
def _warm_copy(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    """sec-netns in warm mode too (invariant 4)."""
    copy = tmp_path_factory.mktemp("sec-netns-warm")
    shutil.copytree(FUNCTIONS / "sec-netns", copy, dirs_exist_ok=True)
    manifest = (copy / "donjon.yaml").read_text()
    (copy / "donjon.yaml").write_text(
        manifest.replace("name: sec-netns", "name: sec-netns-warm") + "isolation: warm\n"
    )
    node.deploy(copy)


def _concurrent(node: LiveNode, fn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Call B listens on a loopback port (TCP and UDP); call A, concurrent, connects and
    sends to it. (A's result, what B received.)"""
    port = free_port()
    box: dict[str, httpx.Response] = {}
    listen = {"op": "listen", "port": port, "seconds": 8}
    thread = threading.Thread(target=lambda: box.setdefault("r", node.invoke(fn, listen)))
    thread.start()
    try:
        a = attack(node, fn, "connect", port=port, marker=secrets.token_hex(6), seconds=4)
    finally:
        thread.join(120)
    r = box["r"]
    assert r.status_code == 200, r.text
    b: dict[str, Any] = r.json()
    return a, b


@MODES
def test_concurrent_call_cannot_reach_anothers_loopback_tcp_listener(
    node: LiveNode, fn: str
) -> None:
    """A TCP connection to a port a concurrent call of the same function listens on fails."""
    a, b = _concurrent(node, fn)
    assert a["tcp"] != "connected", a
    assert b["tcp"] is None, b


@MODES
def test_concurrent_call_cannot_send_udp_to_another_call(node: LiveNode, fn: str) -> None:
    """A datagram to a port a concurrent call of the same function has bound never arrives."""
    a, b = _concurrent(node, fn)
    assert b["udp"] is None, (a, b)


def test_call_cannot_leave_data_for_a_later_call(node: LiveNode) -> None:
    """A call cannot plant bytes in the spare worker's loopback listener for the next call."""
    marker = secrets.token_hex(6)
    planted = attack(node, "sec-netns", "plant", marker=marker, seconds=3)
    found: list[str] = []
    for _ in range(4):  # the next few calls, whichever worker serves them
        found += attack(node, "sec-netns", "drain")["found"]
    assert marker not in found, (planted, found)
    assert planted["planted"] == [], planted


@MODES
def test_function_without_grants_has_no_proxy_or_socket(node: LiveNode, fn: str) -> None:
    """No egress granted: no proxy variables, no proxy socket, nothing on 127.0.0.1:3128."""
    seen = attack(node, fn, "env")
    assert seen["proxy_env"] == {}
    assert seen["egress_dir"] is False
    assert seen["proxy_sock"] is False
    assert seen["relay"] != "connected"
    assert seen["interfaces"] == ["lo"]
    assert seen["listeners"] == []


@MODES
def test_raw_sockets_reach_nothing(node: LiveNode, fn: str) -> None:
    """Raw and packet sockets are refused; a datagram to the host's loopback goes nowhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        seen = attack(node, fn, "raw", host="127.0.0.1", port=server.getsockname()[1])
        with pytest.raises(BlockingIOError):
            server.recv(100)
    assert seen["packet"] != "opened"
    assert seen["raw_ip"] != "opened"
    assert seen["raw_tcp"] != "opened"
