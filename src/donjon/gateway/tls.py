"""The node's self-signed TLS certificate, made at `donjon init`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.durable import sync_directory

__all__ = [
    "CertificateInfo",
    "create_self_signed",
    "describe_certificate",
    "finish_renewal",
    "renew_self_signed",
]


_LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificateInfo:
    """What `donjon tls renew` reports of a certificate."""

    not_after: dt.datetime
    sha256: str
    hostnames: tuple[str, ...]


def describe_certificate(cert_path: Path) -> CertificateInfo:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            a for a in addresses if a not in _LOOPBACK
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
        hostnames=names,
    )


def renew_self_signed(
    cert_path: Path, key_path: Path, hostnames: tuple[str, ...] = (), days: int = 365
) -> CertificateInfo:
    """A new key and certificate in place of the node's own, keeping its host names.

    Both are written (and synced) beside the old ones and renamed over them, key
    first; a renewal cut short between the two renames is finished by the next
    renewal or `donjon serve` (`finish_renewal`). A running `donjon serve` serves the
    new pair from its next check (a few seconds).
    """
    finish_renewal(cert_path, key_path)
    kept = describe_certificate(cert_path).hostnames if cert_path.exists() else ()
    names = tuple(dict.fromkeys(n for n in (*kept, *hostnames) if n != "localhost"))
    new_cert, new_key = _pending(cert_path), _pending(key_path)
    for leftover in (new_cert, new_key):  # from a renewal cut short before its renames
        leftover.unlink(missing_ok=True)
    create_self_signed(new_cert, new_key, names, days=days)
    os.replace(new_key, key_path)
    os.replace(new_cert, cert_path)
    sync_directory(cert_path.parent)  # a power cut keeps both renames
    return describe_certificate(cert_path)


def finish_renewal(cert_path: Path, key_path: Path) -> bool:
    """Put in place the certificate of a renewal killed between its two renames; whether
    it did. Its key is in place already and the old certificate does not match it: the
    node could serve neither. A pair that matches is left as it is."""
    pending = _pending(cert_path)
    if pending.is_symlink() or not pending.is_file():
        return False
    key = _public_key_of_key(key_path)
    if key is None or key == _public_key_of_cert(cert_path):
        return False
    if _public_key_of_cert(pending) != key:
        return False
    os.replace(pending, cert_path)
    sync_directory(cert_path.parent)  # a power cut keeps both renames
    return True


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".new")


def _public_key_of_cert(path: Path) -> bytes | None:
    try:
        public = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    except (OSError, ValueError):
        return None
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public_key_of_key(path: Path) -> bytes | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _subtrees(names: list[x509.GeneralName]) -> list[x509.GeneralName]:
    """The certificate's names as the subtrees it may vouch for (an address: itself alone)."""
    return [
        x509.IPAddress(ipaddress.ip_network(n.value)) if isinstance(n, x509.IPAddress) else n
        for n in names
    ]


def create_self_signed(
    cert_path: Path, key_path: Path, hostnames: tuple[str, ...] = (), days: int = 365
) -> None:
    """An ECDSA P-256 key (0600) and a certificate (a year by default) for localhost,
    loopback and `hostnames`."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in _LOOPBACK]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "donjon")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # Clients trust this certificate as a CA (curl --cacert, DONJON_CA_BUNDLE, a trust
        # store): whatever its key signs is trusted only for the node's own names.
        .add_extension(x509.NameConstraints(_subtrees(names), None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        f.flush()
        os.fsync(f.fileno())  # on disk before a rename can put it in place
    # Never through a link, never writable by others whatever the umask (the CLI trusts it).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(cert_path, flags, 0o644), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(cert_path, 0o644)
