"""Issue 12, point 3 with egress granted: the relay in each call's namespace is the only way out.

A real node whose admin opened 127.0.0.2/32 (DONJON_EGRESS_ALLOW_NETWORKS), a
plain HTTP server there standing in for the granted API, and a function
granted exactly that host:port, in both isolation modes. The function reaches
it through the standard proxy variables (the relay on 127.0.0.1:3128 of its
own network namespace, then the node's egress proxy); it reaches nothing
directly, and it cannot see the proxy's socket.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import LiveNode, start_node
from sec_support import attack, audit_records

HANDLER = r"""
import os, socket, urllib.request

API = ("127.0.0.2", PORT)
URL = "http://127.0.0.2:PORT/hello"

def handler(event, context):
    out = {"proxy": os.environ.get("HTTP_PROXY"), "no_proxy": os.environ.get("NO_PROXY")}
    out["egress_dir"] = os.listdir("/run/donjon-egress")
    with urllib.request.urlopen(URL, timeout=20) as r:
        out["body"] = r.read().decode()
    try:
        socket.create_connection(API, timeout=5).close()
        out["direct"] = "connected"
    except OSError as e:
        out["direct"] = type(e).__name__
    return out
"""


class _Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"granted api " + self.path.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def api() -> Iterator[int]:
    """A plain HTTP server on 127.0.0.2 (the granted destination); its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def egress_node(tmp_path_factory: pytest.TempPathFactory, api: int) -> Iterator[LiveNode]:
    """A node that opened 127.0.0.2/32, with the granted function in both modes."""
    live = start_node(
        tmp_path_factory.mktemp("netns-egress"), {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.2/32"}
    )
    try:
        for name, extra in (("granted", ""), ("granted-warm", "isolation: warm\n")):
            fn: Path = tmp_path_factory.mktemp(name)
            (fn / "main.py").write_text(HANDLER.replace("PORT", str(api)))
            (fn / "donjon.yaml").write_text(
                f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 30\n"
                f'permissions: {{egress: ["127.0.0.2:{api}"]}}\n{extra}'
            )
            live.deploy(fn)
        yield live
    finally:
        live.stop()
        shutil.rmtree(live.data_dir, ignore_errors=True)


MODES = pytest.mark.parametrize("fn", ["granted", "granted-warm"])


@MODES
def test_granted_destination_is_reached_only_through_the_relay(
    egress_node: LiveNode, api: int, fn: str
) -> None:
    """urllib reaches the grant through HTTP_PROXY; a direct connection to it fails."""
    out = attack(egress_node, fn, "")
    assert out["body"] == "granted api /hello"
    assert out["proxy"] == "http://127.0.0.1:3128"
    assert out["no_proxy"] is None
    assert out["egress_dir"] == []  # the proxy's socket is the relay's alone
    assert out["direct"] != "connected"


@MODES
def test_granted_call_is_audited_with_its_own_request_id(
    egress_node: LiveNode, api: int, fn: str
) -> None:
    """The proxy knows the call by the token its relay sent: the record names its request."""
    r = egress_node.invoke(fn, {})
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    records = [
        rec for rec in audit_records(egress_node, request_id) if rec["action"] == "egress.connect"
    ]
    assert records, "no egress.connect record for the call"
    assert records[0]["outcome"] == "allowed"
    assert records[0]["detail"]["destination"] == f"127.0.0.2:{api}"
