"""JWT test kit: key pairs, JWKS documents, tokens (good and forged), an HTTPS JWKS server."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID


@dataclass
class SigningKey:
    """A key pair of an issuer, with its kid and algorithm."""

    kid: str
    algorithm: str
    private: Any

    @classmethod
    def generate(cls, kid: str, algorithm: str = "RS256") -> SigningKey:
        private: Any
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = ed25519.Ed25519PrivateKey.generate()
        return cls(kid, algorithm, private)

    def jwk(self, *, with_alg: bool = True) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.algorithm)
        doc: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        doc["kid"] = self.kid
        doc["use"] = "sig"
        if with_alg:
            doc["alg"] = self.algorithm
        return doc

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(header or {})},
        )


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in keys]}


def claims(iss: str, aud: str, sub: str = "alice", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 300, **extra}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, signed with whatever the caller gives."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def hs256_with(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """HS256 over the token with `secret` as the HMAC key (the alg-confusion forgery)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _cert(
    subject: str, issuer_key: Any, public: Any, issuer_name: x509.Name, ca: bool
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class JwksServer:
    """JWKS documents served over HTTPS on loopback by path; `fetches` counts GETs per path."""

    ca_file: Path
    port: int
    documents: dict[str, bytes] = field(default_factory=dict)
    fetches: dict[str, int] = field(default_factory=dict)
    #: A Content-Encoding to declare for a path's (already encoded) document.
    encodings: dict[str, str] = field(default_factory=dict)
    #: The Accept-Encoding of each GET, in order.
    accepted: list[str] = field(default_factory=list)
    #: A path whose GETs are answered only once its event is set (10 s at most).
    held: dict[str, threading.Event] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def publish(self, path: str, document: Any) -> str:
        self.documents[path] = (
            document if isinstance(document, bytes) else json.dumps(document).encode()
        )
        return self.url(path)


@contextmanager
def jwks_server(directory: Path) -> Iterator[JwksServer]:
    """An HTTPS server with a certificate from a fresh CA (written to `directory`/ca.pem)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "donjon test CA")])
    ca_cert = _cert("donjon test CA", ca_key, ca_key.public_key(), ca_name, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _cert("127.0.0.1", ca_key, server_key.public_key(), ca_name, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    state = JwksServer(ca_file, 0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches[self.path] = state.fetches.get(self.path, 0) + 1
            body = state.documents.get(self.path)
            state.accepted.append(self.headers.get("accept-encoding", ""))
            if self.path in state.held:
                state.held[self.path].wait(10)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "application/json")
            if self.path in state.encodings:
                self.send_header("content-encoding", state.encodings[self.path])
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
