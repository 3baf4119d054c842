"""A client refused for its limits floods on regardless, on kept-alive connections.

After a 429 with Retry-After, the gateway does not read that connection
again for DONJON_REFUSAL_HOLD_S (at most the Retry-After): the flood's next
requests wait in the flooder's own socket, costing the node nothing, while
everyone else is served (gateway/connections.py). Trusted proxies carry other
clients' requests and are never held.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from harness import FUNCTIONS, LiveNode, start_node

pytestmark = pytest.mark.slow

FLOODER = "127.0.0.2"
PROXY = "127.0.0.9"
#: Longer than any wait below: a held connection stays silent through them.
HOLD_S = 60
#: How long a held connection is watched for an answer it must not get.
SILENCE_S = 3.0


@pytest.fixture(scope="module")
def holding_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node that rests refused connections for a minute; PROXY is a trusted proxy."""
    live = start_node(
        tmp_path_factory.mktemp("holding"),
        {"DONJON_REFUSAL_HOLD_S": str(HOLD_S), "DONJON_TRUSTED_PROXIES": f"{PROXY}/32"},
    )
    try:
        live.deploy(FUNCTIONS / "probe")
        yield live
    finally:
        live.stop()


def _connect(node: LiveNode, source: str) -> ssl.SSLSocket:
    port = int(node.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    return node.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _request(key: str) -> bytes:
    body = b"{}"
    return (
        b"POST /v1/functions/probe/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _response(s: ssl.SSLSocket) -> tuple[int, dict[str, str]]:
    """Read one whole response from a kept-alive connection: (status, headers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server inside a body")
        rest += chunk
    return int(lines[0].split()[1]), headers


def _limited_key(node: LiveNode, name: str) -> str:
    key = node.create_key(name, "invoker", ["probe"], {"rate": "1/minute", "burst": 1})
    return str(key["key"])


def _refused(s: ssl.SSLSocket, key: str) -> dict[str, str]:
    """One call served, the next refused 429 with Retry-After: the refusal's headers."""
    s.sendall(_request(key))
    assert _response(s)[0] == 200
    s.sendall(_request(key))
    status, headers = _response(s)
    assert status == 429 and int(headers["retry-after"]) >= 1, headers
    return headers


def _silent(s: ssl.SSLSocket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return not s.recv(1)
    except TimeoutError:
        return True
    finally:
        s.settimeout(30)


def test_flood_after_429_is_not_read_while_others_are_served(holding_node: LiveNode) -> None:
    """After its 429, 20 more requests pipelined on the connection get nothing; others get 200."""
    key = _limited_key(holding_node, "flooder")
    other = _limited_key(holding_node, "bystander")
    with _connect(holding_node, FLOODER) as s:
        _refused(s, key)
        s.sendall(_request(key) * 20)
        with _connect(holding_node, FLOODER) as fresh:  # a new connection is not held
            fresh.sendall(_request(other))
            assert _response(fresh)[0] == 200
        assert _silent(s, SILENCE_S), "the refused connection was read again during its rest"
        with holding_node.client() as c:
            assert c.get("/healthz").status_code == 200


def test_trusted_proxy_connection_is_never_held(holding_node: LiveNode) -> None:
    """A trusted proxy's connection carries others' requests: its next request is answered."""
    key = _limited_key(holding_node, "behind-proxy")
    with _connect(holding_node, PROXY) as s:
        _refused(s, key)
        s.sendall(_request(key))
        s.settimeout(HOLD_S / 2)  # answered well before a rest would end
        assert _response(s)[0] == 429


def test_rested_connection_is_served_again(node: LiveNode) -> None:
    """With the default rest (1 s), the refused connection is kept and read again after it."""
    key = _limited_key(node, "rested")
    with _connect(node, FLOODER) as s:
        assert "ratelimit-policy" in _refused(s, key)
        s.sendall(_request(key))
        assert _response(s)[0] == 429  # on the same connection, once it has rested
