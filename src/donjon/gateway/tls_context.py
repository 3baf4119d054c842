"""The server's TLS context: what the node offers, and the key pair it will serve.

What a handshake may agree on is set here, not left to the host's OpenSSL
configuration: a host with a legacy crypto policy (MinProtocol TLSv1,
@SECLEVEL=0) would otherwise serve TLS 1.0 and CBC ciphers with SHA-1 MACs.
TLS 1.2 is the floor, its suites are ECDHE with AEAD ciphers only (TLS 1.3's
are all AEAD), no compression, no renegotiation.

A certificate and key are checked before the node opens anything, and again
before a renewed pair replaces the one served: a key that does not match its
certificate, a certificate outside its validity, an RSA key under 2048 bits
(or a curve under 256), a signature made with SHA-1 or MD5 is one clear
error, not a traceback from OpenSSL, and never a node serving what clients
must refuse.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from donjon.errors import Error

__all__ = [
    "CertificateError",
    "ServedTls",
    "check_pair",
    "load_pair",
    "served_tls",
    "server_context",
]

#: TLS 1.2's suites: ECDHE key exchange and AEAD ciphers only; OpenSSL's level 2 floors.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:@SECLEVEL=2"
_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256
_WEAK_HASHES = {"md5": "MD5", "sha1": "SHA-1"}
_SERVABLE_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)
_HINT = "pass --tls-cert/--tls-key a matching, current pair, or run `donjon tls renew`"


class CertificateError(Error):
    """A certificate or key the node will not serve."""

    title = "Certificate refused"


@dataclass(frozen=True)
class ServedTls:
    """What the gateway serves over: its context and the files it was loaded from."""

    context: ssl.SSLContext
    cert_path: Path
    key_path: Path


def served_tls(cert_path: Path, key_path: Path) -> ServedTls:
    return ServedTls(server_context(cert_path, key_path), cert_path, key_path)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context serving `cert_path` with `key_path`, once both are checked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    )
    load_pair(context, cert_path, key_path)
    return context


def load_pair(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    """Check the pair (`check_pair`), then serve it from `context`'s next handshake."""
    check_pair(cert_path, key_path)
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        raise CertificateError(
            f"cannot serve {cert_path} with {key_path}: {reason}", hint=_HINT
        ) from e


def check_pair(cert_path: Path, key_path: Path, now: dt.datetime | None = None) -> None:
    """Refuse (`CertificateError`) a pair that does not match, is not current, or is weak.

    The certificate checked is the file's first, the one served (the chain follows it).
    """
    cert = _certificate(cert_path)
    key = _private_key(key_path)
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise CertificateError(
            f"the key in {key_path} does not match the certificate in {cert_path}", hint=_HINT
        )
    moment = now or dt.datetime.now(dt.UTC)
    if moment > cert.not_valid_after_utc:
        raise CertificateError(
            f"the certificate in {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            hint=_HINT,
        )
    if moment < cert.not_valid_before_utc:
        raise CertificateError(
            f"the certificate in {cert_path} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            hint=_HINT,
        )
    _refuse_weak(cert, cert_path)


def _spki(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as e:
        raise CertificateError(f"cannot read {path}: {e.strerror}", hint=_HINT) from e
    except ValueError as e:
        raise CertificateError(f"{path} holds no PEM certificate", hint=_HINT) from e


def _private_key(path: Path) -> PrivateKeyTypes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CertificateError(f"cannot read {path}: {e.strerror}", hint=_HINT) from e
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CertificateError(
            f"{path} holds no PEM private key the node can use (not encrypted)", hint=_HINT
        ) from e


def _refuse_weak(cert: x509.Certificate, path: Path) -> None:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < _MIN_RSA_BITS:
        raise CertificateError(
            f"the certificate in {path} has a {public.key_size}-bit RSA key "
            f"(at least {_MIN_RSA_BITS} bits)",
            hint=_HINT,
        )
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.key_size < _MIN_EC_BITS:
        raise CertificateError(
            f"the certificate in {path} has a {public.curve.key_size}-bit {public.curve.name} "
            f"key (at least {_MIN_EC_BITS} bits)",
            hint=_HINT,
        )
    if not isinstance(public, _SERVABLE_KEYS):  # DSA and the like: no suite offered uses them
        raise CertificateError(
            f"the certificate in {path} has a key of a kind the node does not serve "
            "(RSA, ECDSA, Ed25519 or Ed448)",
            hint=_HINT,
        )
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # MD5 and older: no longer known to cryptography
        name = "a hash too old to check"
    else:
        name = "" if algorithm is None else _WEAK_HASHES.get(algorithm.name, "")
    if name:
        raise CertificateError(f"the certificate in {path} is signed with {name}", hint=_HINT)
