"""The CLI and the node's certificate: found without being told, failures named, renewal live."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from harness import LiveNode, donjon_env, run_cli, start_node


@pytest.fixture(scope="module")
def own_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this module's own: renewing its certificate must not disturb other tests."""
    live = start_node(tmp_path_factory.mktemp("tls-node"))
    try:
        yield live
    finally:
        live.stop()


def _served_certificate(node: LiveNode) -> str:
    host, port = node.url.removeprefix("https://").rsplit(":", 1)
    return ssl.get_server_certificate((host, int(port)), timeout=10)


def test_the_cli_trusts_the_local_node_without_being_told(own_node: LiveNode) -> None:
    """Only DONJON_DATA_DIR, no CA setting: the CLI verifies the node with its own cert."""
    for host in ("127.0.0.1", "localhost"):
        url = own_node.url.replace("127.0.0.1", host)
        keys = json.loads(
            run_cli(
                donjon_env(own_node.data_dir, url, own_node.admin_key), "key", "ls", "--json"
            ).stdout
        )
        assert keys, keys


def test_an_untrusted_certificate_is_named_as_such(own_node: LiveNode, tmp_path: Path) -> None:
    """With no way to trust the node, the error says its certificate is not trusted and how
    to fix it, not that the node may be down."""
    env = donjon_env(tmp_path / "elsewhere", own_node.url, own_node.admin_key)
    done = run_cli(env, "key", "ls", check=False)
    assert done.returncode == 1
    assert "TLS certificate" in done.stderr and "not trusted" in done.stderr, done.stderr
    assert "DONJON_CA_BUNDLE" in done.stderr, done.stderr
    assert "is `donjon serve` running" not in done.stderr


def test_a_ca_bundle_setting_is_used(own_node: LiveNode, tmp_path: Path) -> None:
    """DONJON_CA_BUNDLE names the CA the CLI trusts, from any data dir."""
    env = donjon_env(tmp_path / "elsewhere", own_node.url, own_node.admin_key)
    env["DONJON_CA_BUNDLE"] = own_node.cert
    assert json.loads(run_cli(env, "key", "ls", "--json").stdout)


def test_tls_renew_is_served_without_a_restart(own_node: LiveNode) -> None:
    """`donjon tls renew` replaces key and certificate; the running node serves the new one
    and the CLI keeps working with it."""
    before = _served_certificate(own_node)
    env = own_node.env()
    out = json.loads(
        run_cli(
            env, "tls", "renew", "--hostname", "node.internal", "--days", "30", "--output", "json"
        ).stdout
    )
    assert "node.internal" in out["hostnames"]
    assert len(out["hostnames"]) == len(set(out["hostnames"])), out  # each name once
    cert = x509.load_pem_x509_certificate(Path(own_node.cert).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "node.internal" in san.get_values_for_type(x509.DNSName)
    assert (own_node.data_dir / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    deadline = time.monotonic() + 60
    served = before
    while served == before and time.monotonic() < deadline:
        time.sleep(0.5)
        served = _served_certificate(own_node)
    assert served != before
    assert x509.load_pem_x509_certificate(served.encode()) == cert
    assert json.loads(run_cli(env, "key", "ls", "--json").stdout)
    assert own_node.proc.poll() is None


def test_tls_renew_refuses_a_bad_hostname(own_node: LiveNode) -> None:
    """A host name that is not one is refused and nothing changes."""
    before = Path(own_node.cert).read_bytes()
    done = run_cli(own_node.env(), "tls", "renew", "--hostname", "bad name;rm", check=False)
    assert done.returncode != 0 and "not a host name" in done.stderr
    assert Path(own_node.cert).read_bytes() == before
