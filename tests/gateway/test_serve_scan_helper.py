"""`serve` spawns the scan helper before the node starts (gateway/server.py): a serve that
fails before the node's start takes the helper ends it, in every step of the way."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import uvicorn

from donjon.bootstrap import initialize
from donjon.config import Settings
from donjon.gateway import server
from donjon.gateway.node import Node
from donjon.gateway.tls_context import CertificateError
from donjon.scan import IsolatedScanner
from harness import free_port


def test_a_serve_whose_server_does_not_load_ends_the_spawned_scan_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn failing to load its configuration stops `serve` after the helper was
    spawned and before the node's start would take it: the helper is ended, not left
    running, and the listening socket is closed."""
    settings = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(settings)
    spawned: list[IsolatedScanner] = []
    spawn = Node.spawn_scanner

    def spy(self: Node) -> IsolatedScanner:
        scanner = spawn(self)
        spawned.append(scanner)
        return scanner

    monkeypatch.setattr(Node, "spawn_scanner", spy)
    listeners: list[socket.socket] = []
    bind = server.bind_listener

    def bound(host: str, port: int) -> socket.socket:
        listeners.append(bind(host, port))
        return listeners[-1]

    monkeypatch.setattr(server, "bind_listener", bound)
    # The sandbox probe is not what this test is about (tests/controls/ test it).
    monkeypatch.setattr(server, "enforce", lambda _s, **_k: ())

    def load(_self: uvicorn.Config) -> None:
        raise ssl.SSLError("uvicorn could not load")

    monkeypatch.setattr(uvicorn.Config, "load", load)
    try:
        with pytest.raises(ssl.SSLError):
            server.serve(
                settings,
                "127.0.0.1",
                free_port(),
                tls_cert=settings.tls_cert_path,
                tls_key=settings.tls_key_path,
                unsafe_http=False,
            )
        assert len(spawned) == 1
        assert spawned[0].pid is None
        assert [sock.fileno() for sock in listeners] == [-1]  # the port is given back
    finally:
        for scanner in spawned:
            scanner.close()  # this test's own failure leaves no helper behind


def test_a_certificate_that_does_not_load_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that is no certificate is one clear error before the scan helper is spawned
    or the port bound (gateway/tls_context.py)."""
    settings = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(settings)
    spawned: list[Node] = []
    monkeypatch.setattr(Node, "spawn_scanner", spawned.append)
    bound: list[tuple[str, int]] = []
    monkeypatch.setattr(server, "bind_listener", lambda host, port: bound.append((host, port)))
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(CertificateError, match="holds no PEM certificate"):
        server.serve(
            settings, "127.0.0.1", free_port(), tls_cert=bad, tls_key=bad, unsafe_http=False
        )
    assert spawned == []
    assert bound == []
