"""Attack: a plain-HTTP request through the egress proxy whose `Connection` header names
`Host` or `Content-Length`, so the proxy's hop-by-hop stripping removes them upstream.

The proxy forwards an absolute-form request in origin form and drops every header
`Connection` names (RFC 9110's hop-by-hop rule). Naming `Content-Length` sent the
body without its length: the origin reads the body as a second request on the
connection the proxy checked for the first (`Connection: close` stops only careful
servers). Naming `Host` sent the request with no Host, to the origin's default
virtual host instead of the one the grant and the checked Host name. Both are
refused now, before anything is dialled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from egress_support import API, ProxyRig, raw_request, rig


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyRig]:
    with rig(tmp_path) as r:
        yield r


@pytest.mark.parametrize("named", ["content-length", "Host", "close, Content-Length"])
def test_connection_cannot_strip_the_headers_the_proxy_checked(proxy: ProxyRig, named: str) -> None:
    port = proxy.http_port
    sandbox = proxy.open([f"{API}:{port}"])
    relay = proxy.relay(sandbox, proxy.begin(sandbox, "req-conn"))
    smuggled = f"GET /smuggled HTTP/1.1\r\nHost: internal.donjon.test:{port}\r\n\r\n".encode()
    head = (
        f"POST http://{API}:{port}/echo HTTP/1.1\r\nHost: {API}:{port}\r\n"
        f"Connection: {named}\r\nContent-Length: {len(smuggled)}\r\n\r\n"
    ).encode()
    answer = raw_request(relay, head + smuggled)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Connection" in answer
    assert proxy.upstream.heads == []  # nothing was dialled, nothing reached the origin
    proxy.run(sandbox.end_call(proxy.begin(sandbox)))
    [record] = proxy.records()
    assert record["detail"]["decision"] == "denied"
    assert record["detail"]["request_id"] == "req-conn"
