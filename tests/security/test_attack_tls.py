"""The node's TLS as a client and an operator meet it: what it offers, and what it serves.

The attacks: a client (or a man in the middle downgrading one) asking for TLS 1.0 or a
CBC cipher on a host whose OpenSSL configuration still allows them; a `donjon tls renew`
killed between the renames of its key and its certificate; a key and certificate given to
`serve` that do not match, have expired, or are too weak to trust.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from donjon.gateway.tls import create_self_signed
from harness import LiveNode, donjon_env, free_port, initialise, run_cli, serve_initialised

#: A host whose OpenSSL allows what it should not (RHEL's LEGACY policy, old distributions).
_LEGACY_OPENSSL = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT:@SECLEVEL=0
"""


@pytest.fixture(scope="module")
def legacy_host_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node started under an OpenSSL configuration that allows TLS 1.0 and SHA-1."""
    data_dir = tmp_path_factory.mktemp("tls-legacy")
    conf = data_dir.parent / "legacy-openssl.cnf"
    conf.write_text(_LEGACY_OPENSSL)
    live = serve_initialised(data_dir, initialise(data_dir), {"OPENSSL_CONF": str(conf)})
    try:
        yield live
    finally:
        live.stop()


def _handshake(node: LiveNode, version: ssl.TLSVersion, ciphers: str = "ALL") -> str:
    """The protocol agreed with a client that offers only `version` and `ciphers`."""
    with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated names: the attack
        warnings.simplefilter("ignore", DeprecationWarning)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(node.cert)
        client.minimum_version = client.maximum_version = version
    client.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    host, port = node.url.removeprefix("https://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return str(tls.version())


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_is_refused_even_where_the_host_allows_it(
    legacy_host_node: LiveNode, version: str
) -> None:
    """TLS 1.0 and 1.1 are refused whatever the host's OpenSSL configuration allows."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(legacy_host_node, ssl.TLSVersion[version])


def test_cbc_ciphers_are_refused_even_where_the_host_allows_them(
    legacy_host_node: LiveNode,
) -> None:
    """TLS 1.2 with a CBC (MAC-then-encrypt, SHA-1) cipher is refused; an AEAD one is not."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(legacy_host_node, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA")
    assert _handshake(legacy_host_node, ssl.TLSVersion.TLSv1_2, "ECDHE+AESGCM") == "TLSv1.2"
    assert _handshake(legacy_host_node, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


_KILL_AFTER_KEY = """\
import os, signal
_replace = os.replace
def _replace_then_die(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    if os.fspath(dst).endswith("key.pem"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = _replace_then_die
"""


def _public(pem: bytes) -> bytes:
    return (
        x509.load_pem_x509_certificate(pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_a_renewal_killed_between_its_renames_leaves_a_node_that_starts(tmp_path: Path) -> None:
    """SIGKILL right after `tls renew` put the new key in place, before the certificate:
    the node still starts, and serves a certificate that matches the key in the data dir."""
    data_dir = tmp_path / "data"
    admin_key = initialise(data_dir)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_KILL_AFTER_KEY)
    env = {**donjon_env(data_dir), "PYTHONPATH": str(hook)}
    done = run_cli(env, "tls", "renew", "--hostname", "node.internal", check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    live = serve_initialised(data_dir, admin_key)
    try:
        host, port = live.url.removeprefix("https://").rsplit(":", 1)
        served = ssl.get_server_certificate((host, int(port)), timeout=10)
        key = serialization.load_pem_private_key((data_dir / "tls" / "key.pem").read_bytes(), None)
        key_public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert _public(served.encode()) == key_public
        assert _public((data_dir / "tls" / "cert.pem").read_bytes()) == key_public
        assert (data_dir / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
        assert run_cli(live.env(), "key", "ls", "--json").returncode == 0
    finally:
        live.stop()


def _pair(
    directory: Path,
    name: str,
    *,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    days: int = 30,
) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, written as NAME.pem/NAME.key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=60), now + dt.timedelta(days=days))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _serve_with(data_dir: Path, cert: Path, key: Path) -> str:
    """`donjon serve --tls-cert CERT --tls-key KEY`, which must exit without serving."""
    port = free_port()
    env = donjon_env(data_dir, f"https://127.0.0.1:{port}")
    argv = [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port)]
    argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"the node served with {cert.name}:\n{out[-2000:]}")
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    return out


@pytest.fixture
def refusing_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    initialise(data_dir)
    return data_dir


def test_a_key_that_does_not_match_the_certificate_is_refused_clearly(
    refusing_dir: Path, tmp_path: Path
) -> None:
    """A certificate and someone else's key: one clear line, no traceback, no node."""
    cert, _ = _pair(tmp_path, "one")
    _, other_key = _pair(tmp_path, "two")
    out = _serve_with(refusing_dir, cert, other_key)
    assert "does not match" in out, out


def test_an_expired_certificate_is_refused(refusing_dir: Path, tmp_path: Path) -> None:
    """A certificate past its end is refused before the node serves it."""
    cert, key = _pair(tmp_path, "old", days=-1)
    out = _serve_with(refusing_dir, cert, key)
    assert "expired" in out, out


def test_a_1024_bit_rsa_key_is_refused(refusing_dir: Path, tmp_path: Path) -> None:
    """An RSA key of 1024 bits is too weak to serve."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the attack
    cert, key = _pair(tmp_path, "weak", key=weak)
    out = _serve_with(refusing_dir, cert, key)
    assert "1024-bit" in out, out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_sha1_signed_certificate_is_refused(refusing_dir: Path, tmp_path: Path) -> None:
    """A certificate signed with SHA-1 (made by openssl: cryptography no longer signs
    with it) is refused, with its reason named."""
    cert, key = tmp_path / "sha1.pem", tmp_path / "sha1.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha1"),
            *("-days", "30", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    out = _serve_with(refusing_dir, cert, key)
    assert "SHA-1" in out, out


def test_the_data_dir_key_stays_private_after_renew(refusing_dir: Path) -> None:
    """`tls renew` under a permissive umask still leaves the key 0600 and the cert 0644."""
    old = os.umask(0)
    try:
        run_cli(donjon_env(refusing_dir), "tls", "renew")
    finally:
        os.umask(old)
    tls = refusing_dir / "tls"
    assert (tls / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (tls / "cert.pem").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tls.iterdir()) == ["cert.pem", "key.pem"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_renew_refuses_a_data_dir_another_user_owns(refusing_dir: Path) -> None:
    """`tls renew` run by root on the node user's data dir is refused before it writes:
    a root-owned 0600 key would leave that node unable to read its own key."""
    node_user = 65534
    for path in (refusing_dir, *refusing_dir.rglob("*")):
        os.lchown(path, node_user, node_user)
    key = refusing_dir / "tls" / "key.pem"
    before = key.read_bytes()
    done = run_cli(donjon_env(refusing_dir), "tls", "renew", check=False)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert f"uid {node_user}" in done.stderr, done.stderr
    assert key.read_bytes() == before
    assert key.stat().st_uid == node_user


def _leaf_signed_by(cert_path: Path, key_path: Path, name: str, out: Path) -> Path:
    """A certificate for `name` signed with the node's key; chain and key in `out`."""
    node_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    node_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(node_key, ec.EllipticCurvePrivateKey)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(node_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(node_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    out.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + leaf.public_bytes(pem)
        + node_cert.public_bytes(pem)
    )
    return out


def _handshake_as(chain: Path, name: str, cafile: Path) -> None:
    """A TLS handshake with a server presenting `chain`, by a client trusting `cafile`
    and asking for `name`; raises what the client's verification raises."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain)
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True) as s:
                s.recv(1)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=str(cafile))
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname=name),
            ):
                pass
        finally:
            thread.join(10)


def test_the_node_key_vouches_for_no_other_name(tmp_path: Path) -> None:
    """Clients trust the node's certificate as a CA (curl --cacert, DONJON_CA_BUNDLE): a
    certificate its key signs for another host (a stolen key.pem) is refused by them;
    one for a name of the node's own still verifies."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    create_self_signed(cert, key, ("node.internal",))
    evil = _leaf_signed_by(cert, key, "bank.example", tmp_path / "evil.pem")
    with pytest.raises(ssl.SSLCertVerificationError, match="subtree"):
        _handshake_as(evil, "bank.example", cert)
    own = _leaf_signed_by(cert, key, "node.internal", tmp_path / "own.pem")
    _handshake_as(own, "node.internal", cert)


def test_a_pair_swapped_under_a_running_node_is_refused_once(tmp_path: Path) -> None:
    """A key that does not match the certificate put in place under a running node: it
    keeps serving the old pair (with its key: handshakes still succeed) and says so once,
    not every check of the files (a line every 2 s, for as long as the pair stays)."""
    data_dir = tmp_path / "data"
    live = serve_initialised(data_dir, initialise(data_dir))
    try:
        host, port = live.url.removeprefix("https://").rsplit(":", 1)
        before = ssl.get_server_certificate((host, int(port)), timeout=10)
        _, other_key = _pair(tmp_path, "other")
        swapped = data_dir / "tls" / "key.pem.swap"
        swapped.write_bytes(other_key.read_bytes())
        swapped.chmod(0o600)
        os.replace(swapped, data_dir / "tls" / "key.pem")
        time.sleep(7)  # three checks or more
        assert ssl.get_server_certificate((host, int(port)), timeout=10) == before
        with live.client() as c:
            assert c.get("/healthz").status_code == 200
        said = (data_dir / "serve.log").read_text()
        assert said.count("could not be loaded") == 1, said
    finally:
        live.stop()
