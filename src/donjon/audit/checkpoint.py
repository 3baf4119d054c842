"""Signed checkpoints of the audit log's Merkle tree (C2SP tlog-checkpoint, signed note).

A checkpoint says "the log of `origin` had `size` records, whose RFC 6962 root
is `root`, at `time`". Its text is a signed note::

    <origin>
    <size>
    <base64 root>
    time <unix ms>

    — <origin> <base64(key_id[4] || Ed25519 signature over the four lines above)>

The signing key is an Ed25519 key of its own, made at `donjon init`, never
derived from nor wrapped by the master key: whoever holds the master key still
cannot sign a rewritten log. Its public half travels as a verifier key string
(`donjon audit pubkey`): ``<origin>+<key_id hex>+<base64(0x01 || public key)>``,
where origin = ``donjon.audit/`` + the first 16 hex digits of SHA-256(public key)
and key_id = SHA-256(origin || "\\n" || 0x01 || public key)[:4].

Pure but for the key files: the offline verifier (`donjon audit check-proof`)
needs nothing else of Donjon.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from donjon.errors import Error
from donjon.secret import Secret

__all__ = [
    "ORIGIN_PREFIX",
    "Checkpoint",
    "CheckpointError",
    "SigningKey",
    "VerifierKey",
    "open_checkpoint",
]

ORIGIN_PREFIX = "donjon.audit/"
#: The signature line's lead: an em dash and a space (C2SP signed-note).
_SIG_LEAD = "\u2014 "
_ED25519 = b"\x01"  # the signed-note algorithm byte for Ed25519
_PUBLIC_BYTES = 32
_SIGNATURE_BYTES = 64
_MAX_NOTE = 8192
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class CheckpointError(Error):
    """A checkpoint, its signature or a signing/verifier key is not what it must be."""

    title = "Audit checkpoint error"


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement of the tree: its size, root and time."""

    origin: str
    size: int
    root: bytes
    timestamp_ms: int

    def body(self) -> bytes:
        """The exact bytes that are signed: the note's first four lines."""
        if self.size < 0 or self.timestamp_ms < 0 or len(self.root) != 32:
            raise CheckpointError(
                f"checkpoint of size {self.size} is malformed",
                hint="size and time are non-negative, the root is 32 bytes",
            )
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntime {self.timestamp_ms}\n".encode()


def _origin(public: bytes) -> str:
    return ORIGIN_PREFIX + sha256(public).hexdigest()[:16]


def _key_id(origin: str, public: bytes) -> bytes:
    return sha256(origin.encode() + b"\n" + _ED25519 + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """The public half of the signing key, with the name it signs under."""

    origin: str
    key_id: bytes
    public: bytes

    @classmethod
    def from_public(cls, public: bytes) -> VerifierKey:
        origin = _origin(public)
        return cls(origin, _key_id(origin, public), public)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read a verifier key string; any inconsistency is refused."""
        hint = "pass the line `donjon audit pubkey` prints (or DATA_DIR/audit-signing.pub)"
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a verifier key has three parts joined by '+'", hint=hint)
        origin, key_id_hex, encoded = parts
        try:
            key_id = bytes.fromhex(key_id_hex)
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError("the verifier key is not hex and base64", hint=hint) from None
        if len(raw) != 1 + _PUBLIC_BYTES or raw[:1] != _ED25519:
            raise CheckpointError("the verifier key is not an Ed25519 key", hint=hint)
        key = cls.from_public(raw[1:])
        if origin != key.origin:
            raise CheckpointError(
                f"the verifier key names origin {origin!r}, its key is {key.origin!r}", hint=hint
            )
        if key_id != key.key_id:
            raise CheckpointError("the verifier key's id does not match its key", hint=hint)
        return key

    def __str__(self) -> str:
        encoded = base64.b64encode(_ED25519 + self.public).decode()
        return f"{self.origin}+{self.key_id.hex()}+{encoded}"

    def verify(self, body: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, body)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """The log's Ed25519 signing key; `repr` never shows it."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._verifier = VerifierKey.from_public(public)

    def __repr__(self) -> str:
        return f"SigningKey({self._verifier.origin!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key in memory only (tests, and `create`)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key whose 32-byte Ed25519 private seed is `seed` (tests and fixtures; the
        node's key is random, made by `create`)."""
        if len(seed) != 32:
            raise CheckpointError(
                f"an Ed25519 seed is 32 bytes, not {len(seed)}", hint="pass 32 random bytes"
            )
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def create(cls, path: Path, pub_path: Path) -> SigningKey:
        """Write a new key to `path` (PKCS8 PEM, 0600) and its verifier key string to
        `pub_path`; never overwrite either."""
        key = cls.generate()
        pem = key._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_new(path, pem, 0o600)
        _write_new(pub_path, (str(key.verifier) + "\n").encode(), 0o644)
        return key

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read the key, refusing one that others can read or that is not Ed25519."""
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CheckpointError(
                f"no audit signing key at {path}", hint="run `donjon init` (or `donjon serve`)"
            ) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CheckpointError(
                f"{path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o})",
                hint=f"chmod 600 {path}",
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError:
            raise CheckpointError(
                f"{path} is not a PEM private key", hint="restore it from your backup"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError(f"{path} is not an Ed25519 key", hint="restore it from backup")
        return cls(key)

    @property
    def verifier(self) -> VerifierKey:
        return self._verifier

    @property
    def origin(self) -> str:
        return self._verifier.origin

    def seed(self) -> Secret[bytes]:
        """The 32-byte private seed, for the audit writer process only (it receives it
        over its socketpair, never through a file, argv or the environment)."""
        return Secret(
            self._key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

    def sign_body(self, body: bytes) -> bytes:
        """The raw Ed25519 signature of `body` (the signed head uses it)."""
        return self._key.sign(body)

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note text of `checkpoint`."""
        if checkpoint.origin != self.origin:
            raise CheckpointError(
                f"checkpoint origin {checkpoint.origin!r} is not this key's {self.origin!r}",
                hint="make checkpoints with Checkpoint(key.origin, ...)",
            )
        body = checkpoint.body()
        blob = base64.b64encode(self._verifier.key_id + self._key.sign(body)).decode()
        return f"{body.decode()}\n{_SIG_LEAD}{self.origin} {blob}\n"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise CheckpointError(
            f"{path} exists; refusing to overwrite an audit signing key",
            hint="keep the existing key (old checkpoints are signed by it)",
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_HINT = "the checkpoint must be the signed note Donjon wrote, under this log's verifier key"


def _parse_body(body_text: str, key: VerifierKey) -> Checkpoint:
    lines = body_text.split("\n")
    if len(lines) != 4:
        raise CheckpointError(
            f"the checkpoint body has {len(lines)} lines, not 4 (origin, size, root, time)",
            hint=_HINT,
        )
    origin, size_text, root_text, time_text = lines
    if origin != key.origin:
        raise CheckpointError(
            f"the checkpoint is for origin {origin!r}, the key signs {key.origin!r}", hint=_HINT
        )
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(f"the checkpoint size {size_text!r} is not a number", hint=_HINT)
    if not time_text.startswith("time ") or not _DECIMAL.fullmatch(time_text[5:]):
        raise CheckpointError(f"the checkpoint time {time_text!r} is malformed", hint=_HINT)
    try:
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, binascii.Error):
        root = b""
    if len(root) != 32:
        raise CheckpointError("the checkpoint root is not a base64 SHA-256 hash", hint=_HINT)
    checkpoint = Checkpoint(origin, int(size_text), root, int(time_text[5:]))
    if checkpoint.body() != (body_text + "\n").encode():
        raise CheckpointError("the checkpoint body is not in canonical form", hint=_HINT)
    return checkpoint


def _our_signature(line: str, key: VerifierKey) -> bytes | None:
    """The signature a signature line carries for `key`, or None (a cosigner's line)."""
    if not line.startswith(_SIG_LEAD):
        raise CheckpointError("a checkpoint signature line is malformed", hint=_HINT)
    name, _, blob_text = line[len(_SIG_LEAD) :].partition(" ")
    if name != key.origin:
        return None
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(blob) != 4 + _SIGNATURE_BYTES or blob[:4] != key.key_id:
        return None
    return blob[4:]


def open_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """Parse a signed note and check `key`'s signature on it; anything else is refused."""
    if len(note) > _MAX_NOTE:
        raise CheckpointError("the checkpoint note is too long", hint=_HINT)
    body_text, sep, sigs = note.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise CheckpointError("the checkpoint has no signature block", hint=_HINT)
    checkpoint = _parse_body(body_text, key)
    for line in sigs[:-1].split("\n"):
        signature = _our_signature(line, key)
        if signature is None:
            continue
        if key.verify(checkpoint.body(), signature):
            return checkpoint
        raise CheckpointError(
            f"the checkpoint of size {checkpoint.size} has a bad signature: it was altered",
            hint=_HINT,
        )
    raise CheckpointError("the checkpoint carries no signature by this key", hint=_HINT)
