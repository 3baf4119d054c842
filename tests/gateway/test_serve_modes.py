"""`donjon serve` options: plain HTTP only when asked (with a warning), a given certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from donjon.gateway.tls import create_self_signed
from harness import client_tls, donjon_env, free_port, run_cli


def _serve(
    data: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log = data.parent / "serve.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon.cli", "serve", *args],
            env={**donjon_env(data), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def _wait(url: str, verify: ssl.SSLContext | bool) -> httpx.Response:
    for _ in range(150):
        try:
            return httpx.get(url, verify=verify, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered at {url}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_unsafe_http_serves_plain_http_and_warns(tmp_path: Path) -> None:
    """--unsafe-http serves plain HTTP and says so in the log at start."""
    data = tmp_path / "data"
    run_cli(donjon_env(data), "init", "--json")
    port = free_port()
    proc, log = _serve(data, "--port", str(port), "--unsafe-http")
    try:
        assert _wait(f"http://127.0.0.1:{port}/healthz", False).status_code == 200
    finally:
        _stop(proc)
    assert "UNSAFE" in log.read_text()


def _plain_answer(port: int, source: str) -> bytes:
    """A GET /healthz on a new plain connection from `source`: what came back."""
    with socket.create_connection(("127.0.0.1", port), 30, (source, 0)) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(4096)
        except ConnectionResetError:
            return b""


@pytest.mark.slow
def test_unsafe_http_is_gated_by_the_connect_rate(tmp_path: Path) -> None:
    """Plain HTTP too: past its burst an address's new connections close unanswered."""
    data = tmp_path / "data"
    run_cli(donjon_env(data), "init", "--json")
    port = free_port()
    env = {"DONJON_CONNECT_RATE": "1", "DONJON_CONNECT_BURST": "2"}
    proc, _ = _serve(data, "--port", str(port), "--unsafe-http", env=env)
    try:
        assert _wait(f"http://127.0.0.1:{port}/healthz", False).status_code == 200
        answers = [_plain_answer(port, "127.0.0.2") for _ in range(20)]
        assert answers[0].startswith(b"HTTP/1.1 200 ")
        assert answers.count(b"") >= 10, answers
        assert _plain_answer(port, "127.0.0.3").startswith(b"HTTP/1.1 200 ")
    finally:
        _stop(proc)


def test_serves_a_given_certificate(tmp_path: Path) -> None:
    """--tls-cert/--tls-key replace the certificate init made."""
    data = tmp_path / "data"
    run_cli(donjon_env(data), "init", "--json")
    cert, key = tmp_path / "mine.pem", tmp_path / "mine.key"
    create_self_signed(cert, key)
    port = free_port()
    proc, _ = _serve(data, "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        ours = client_tls(str(cert))
        assert _wait(f"https://127.0.0.1:{port}/healthz", ours).status_code == 200
        init_cert = client_tls(str(data / "tls" / "cert.pem"))
        try:
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=init_cert, timeout=3)
            raise AssertionError("the init certificate should not be the one served")
        except httpx.ConnectError:
            pass
    finally:
        _stop(proc)


def test_tls_key_without_cert_is_a_usage_error(tmp_path: Path) -> None:
    """Half a TLS configuration is refused before anything starts."""
    data = tmp_path / "data"
    run_cli(donjon_env(data), "init", "--json")
    key = tmp_path / "k.pem"
    key.write_text("x")
    done = run_cli(donjon_env(data), "serve", "--tls-key", str(key), check=False)
    assert done.returncode != 0
    assert "go together" in done.stderr
