"""A new TLS connection for every request: past the connect rate, closed before the handshake.

The node here allows 3 new connections at once and 1 a second per address
(DONJON_CONNECT_BURST, DONJON_CONNECT_RATE); 127.0.0.1, the harness's own
address, is a trusted proxy and so exempt. Each attacker connection sends a real
ClientHello: one let through gets the server's handshake back, one refused gets
not a byte, only the close.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from donjon.store.tables import audit_log
from harness import LiveNode, fresh_source, run_cli, start_node

FLOOD = 60


@pytest.fixture
def gated_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node with a tight connect rate, 127.0.0.1 as trusted proxy, a denial window of 1 h."""
    live = start_node(
        tmp_path / "data",
        {
            "DONJON_CONNECT_RATE": "1",
            "DONJON_CONNECT_BURST": "3",
            "DONJON_TRUSTED_PROXIES": "127.0.0.1/32",
            "DONJON_AUDIT_DENIAL_WINDOW_S": "3600",
        },
    )
    try:
        yield live
    finally:
        live.stop()


def _client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    hello = outgoing.read()
    assert hello.startswith(b"\x16\x03")  # a TLS handshake record
    return hello


def _bytes_back(node: LiveNode, source: str, hello: bytes) -> int:
    """Connect from `source`, send `hello`, read until the server speaks or closes."""
    port = int(node.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0)) as s:
        try:
            s.sendall(hello)
            return len(s.recv(4096))
        except ConnectionResetError:  # aborted: a reset instead of an orderly close
            return 0


def _flood(node: LiveNode, source: str) -> tuple[int, int]:
    """FLOOD ClientHellos from `source`: (answered, refused without a byte)."""
    hello = _client_hello()
    answered = sum(1 for _ in range(FLOOD) if _bytes_back(node, source, hello) > 0)
    return answered, FLOOD - answered


def _connect_refusals(node: LiveNode) -> float:
    with node.client() as c:
        text = c.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("donjon_rate_limited_total{") and 'limit="connect"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _denials(records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["action"] == "node.shed"
        and r["detail"].get("client") == source
        and (
            r["detail"].get("reason") == "connect-rate"
            or "connect-rate" in r["detail"].get("reasons", {})
        )
    ]


def _db_records(data_dir: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{data_dir / 'donjon.db'}")
    try:
        with engine.connect() as conn:
            return [
                json.loads(bytes(raw))
                for raw in conn.execute(
                    select(audit_log.c.record).order_by(audit_log.c.seq)
                ).scalars()
            ]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_handshake_flood_is_closed_before_tls(gated_node: LiveNode) -> None:
    """60 new connections from one address: past the burst, closed with no handshake byte."""
    node, attacker, other = gated_node, fresh_source(), fresh_source()
    answered, refused = _flood(node, attacker)
    assert answered >= 1, "the burst is let through"
    assert refused >= FLOOD // 2, (answered, refused)
    # Another address is served, and so is /healthz, with the attacker's bucket empty.
    with node.client(source=other) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/functions").status_code == 200
    assert _connect_refusals(node) == refused


@pytest.mark.slow
def test_trusted_proxy_is_not_refused(gated_node: LiveNode) -> None:
    """40 new connections in a row from the trusted proxy (127.0.0.1): every one served."""
    node = gated_node
    statuses = []
    for _ in range(40):
        with node.client() as c:  # a new connection each
            statuses.append(c.get("/healthz").status_code)
    assert statuses == [200] * 40
    assert _connect_refusals(node) == 0


@pytest.mark.slow
def test_connect_refusals_are_audited_once_per_window(gated_node: LiveNode) -> None:
    """The flood's refusals: one record at once, one aggregate at stop, counts summing exactly."""
    node, attacker = gated_node, fresh_source()
    _, refused = _flood(node, attacker)
    assert refused >= FLOOD // 2
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": 10_000})
    assert r.status_code == 200, r.text
    during = _denials(r.json(), attacker)
    assert len(during) == 1, during  # the first at once, the rest only counted so far
    assert during[0]["outcome"] == "denied"
    node.stop()
    denials = _denials(_db_records(node.data_dir), attacker)
    assert len(denials) == 2, denials
    assert sum(rec["detail"]["count"] for rec in denials) == refused
    assert denials[1]["detail"]["aggregated"] is True
    assert run_cli(node.env(), "audit", "verify").returncode == 0
