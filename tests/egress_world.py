"""A small internet on loopback for the egress tests and bench: a CA, origins, a DNS server.

- `TestCA`: a certificate authority of its own (the function trusts it through its bundle).
- `Origin`: an HTTPS (or plain HTTP) server on one loopback address and port that records
  every TCP connection it accepts and every request it answers (path, Host, SNI), so a
  test can say that nothing arrived. TLS is wrapped in the connection's thread, so a
  client that never finishes its handshake blocks nobody.
- `DnsServer`: a UDP DNS server (dnspython) answering from a fixed zone, with one name
  that rebinds: its first A answer is the origin, every later one is 127.0.0.1.

Everything is bounded (timeouts on every socket, daemon threads) and stops with `close`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The names of the test internet (the .test TLD is reserved: RFC 2606).
DOMAIN = "donjon.test"
#: Names the origin's certificate covers.
CERT_NAMES = (
    f"api.{DOMAIN}",
    f"other.{DOMAIN}",
    f"a.s3.{DOMAIN}",
    f"deep.er.s3.{DOMAIN}",
    f"s3.{DOMAIN}",
    f"xs3.{DOMAIN}",
    f"rebind.{DOMAIN}",
)


class TestCA:
    """A CA made for one test session; `issue` signs a server certificate for names."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Donjon egress test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: Iterable[str], directory: Path) -> tuple[Path, Path]:
        """A server certificate for `names`, written to `directory`: (cert.pem, key.pem)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names = list(names)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.pem)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


@dataclass(frozen=True)
class Seen:
    """One request an origin answered."""

    method: str
    path: str
    host: str
    sni: str | None


@dataclass
class OriginLog:
    accepted: int = 0
    handshakes: int = 0
    requests: list[Seen] = field(default_factory=list)
    #: Paths of /hold requests whose client has gone (the connection was closed).
    released: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [s.path for s in self.requests]

    def saw(self, marker: str) -> bool:
        """Whether any request's path contains `marker`."""
        return any(marker in p for p in self.paths())


_IO_TIMEOUT_S = 20.0
_MAX_HEAD = 16384
_MAX_BODY = 64 * 1024 * 1024
_MAX_REQUESTS = 100


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        raw: socket.socket = self.request
        raw.settimeout(_IO_TIMEOUT_S)
        conn: socket.socket = raw
        sni = None
        if self.server.tls is not None:
            try:
                conn = self.server.tls.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                return
            sni = getattr(conn, "donjon_sni", None)
            with self.server.log.lock:
                self.server.log.handshakes += 1
        try:
            self._serve(conn, sni)
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            conn.close()

    def _serve(self, conn: socket.socket, sni: str | None) -> None:
        buffer = b""
        for _ in range(_MAX_REQUESTS):  # keep-alive: requests one after another
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(4096)
                if not chunk or len(buffer) > _MAX_HEAD:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            if not self._answer(conn, head, sni):
                return

    def _answer(self, conn: socket.socket, head: bytes, sni: str | None) -> bool:
        """Answer one request; whether the connection stays open for another."""
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = Seen(method, target, headers.get("host", ""), sni)
        with self.server.log.lock:
            self.server.log.requests.append(seen)
        if target.startswith("/big/"):
            size = min(int(target.split("/")[2]), _MAX_BODY)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
            )
            block = b"x" * 65536
            sent = 0
            while sent < size:
                n = min(len(block), size - sent)
                conn.sendall(block[:n])
                sent += n
            return False
        if target.startswith("/hold/"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nheld\n")
            conn.settimeout(1.0)
            for _ in range(120):  # at most ~2 minutes: then give up and say nothing
                try:
                    if conn.recv(4096) == b"":
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            else:
                return False
            with self.server.log.lock:
                self.server.log.released.append(target)
            return False
        body = json.dumps(
            {"origin": self.server.label, "path": target, "host": seen.host, "sni": sni}
        ).encode()
        keep = headers.get("connection", "").lower() != "close"  # HTTP/1.1's default
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + (b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n")
            + body
        )
        return keep


def _remember_sni(sock: Any, name: str | None, _context: Any) -> None:
    """Keep the SNI the client sent on its server-side socket (read by the handler)."""
    sock.donjon_sni = name


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None, label: str) -> None:
        self.tls = tls
        self.label = label
        self.log = OriginLog()
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.log.lock:
            self.log.accepted += 1
        return True


class Origin:
    """A server on `host:port` (port 0: any free one), HTTPS when `cert` is given."""

    def __init__(
        self, host: str, port: int = 0, cert: tuple[Path, Path] | None = None, label: str = ""
    ) -> None:
        tls = None
        if cert is not None:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(*cert)
            tls.sni_callback = _remember_sni
        self._server = _Server((host, port), tls, label or f"{host}:{port}")
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def log(self) -> OriginLog:
        return self._server.log

    @property
    def accepted(self) -> int:
        with self.log.lock:
            return self.log.accepted

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DnsServer:
    """A UDP DNS server on 127.0.0.1 answering A and AAAA from `zone`.

    `zone` maps a name to its addresses; `rebind` maps a name to (first, later): the
    first A query for it or any name under it is answered `first`, every later one for
    that same name `later` (so each test can rebind a fresh name). Other names are
    NXDOMAIN. Every answer has TTL 0.
    """

    def __init__(self, zone: dict[str, list[str]], rebind: dict[str, tuple[str, str]]) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        self._dns = dns
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.rebind = {k.lower().rstrip("."): v for k, v in rebind.items()}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.5)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def queried(self, name: str) -> int:
        with self._lock:
            return sum(1 for n, _ in self.queries if n == name)

    def _answer(self, data: bytes) -> bytes | None:
        dns = self._dns
        try:
            query = dns.message.from_wire(data)
        except Exception:  # anything malformed is dropped, as a server would
            return None
        response = dns.message.make_response(query)
        if not query.question:
            return None
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            earlier = sum(1 for n, t in self.queries if n == name and t == rdtype)
            self.queries.append((name, rdtype))
        rebinding = next((k for k in self.rebind if name == k or name.endswith("." + k)), None)
        if rebinding is not None:
            first, later = self.rebind[rebinding]
            addresses = [first if earlier == 0 else later] if rdtype == "A" else []
        elif name in self.zone:
            addresses = self.zone[name]
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return bytes(response.to_wire())
        for address in addresses:
            family = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
            if family == rdtype:
                response.answer.append(dns.rrset.from_text(question.name, 0, "IN", rdtype, address))
        return bytes(response.to_wire())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self._answer(data)
            if answer is not None:
                self._sock.sendto(answer, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def bind_free(host: str, port: int) -> bool:
    """Whether `host:port` can be bound now (another test run may hold it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
