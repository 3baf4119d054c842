"""Signed checkpoints: the note format, the key files and every refusal."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from donjon.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    SigningKey,
    VerifierKey,
    open_checkpoint,
)
from donjon.audit.merkle import EMPTY_ROOT


def _checkpoint(key: SigningKey, size: int = 5) -> Checkpoint:
    return Checkpoint(key.origin, size, sha256(b"root %d" % size).digest(), 1_700_000_000_123)


def test_note_has_the_c2sp_shape_and_verifies_independently() -> None:
    """The note is origin/size/root/time, a blank line and one signature line that
    the cryptography library verifies on its own over the first four lines."""
    key = SigningKey.generate()
    cp = _checkpoint(key)
    note = key.sign(cp)
    lines = note.split("\n")
    assert lines[0] == key.origin and key.origin.startswith("donjon.audit/")
    assert lines[1] == "5"
    assert base64.b64decode(lines[2]) == cp.root
    assert lines[3] == "time 1700000000123"
    assert lines[4] == ""
    assert lines[5].startswith("\u2014 " + key.origin + " ")
    assert lines[6] == "" and len(lines) == 7
    blob = base64.b64decode(lines[5].rsplit(" ", 1)[1])
    vkey = key.verifier
    assert blob[:4] == sha256(vkey.origin.encode() + b"\n\x01" + vkey.public).digest()[:4]
    body = "\n".join(lines[:4]).encode() + b"\n"
    Ed25519PublicKey.from_public_bytes(vkey.public).verify(blob[4:], body)
    assert open_checkpoint(note, vkey) == cp


def test_origin_is_named_after_the_public_key() -> None:
    """origin = donjon.audit/ + 16 hex digits of SHA-256(public key)."""
    key = SigningKey.generate()
    assert key.origin == "donjon.audit/" + sha256(key.verifier.public).hexdigest()[:16]


def test_empty_tree_checkpoint() -> None:
    """A checkpoint of size 0 carries SHA-256("") and verifies."""
    key = SigningKey.generate()
    cp = Checkpoint(key.origin, 0, EMPTY_ROOT, 1)
    assert open_checkpoint(key.sign(cp), key.verifier) == cp


def test_verifier_key_string_round_trips() -> None:
    """str(VerifierKey) parses back to the same key."""
    vkey = SigningKey.generate().verifier
    text = str(vkey)
    origin, key_id, encoded = text.split("+", 2)
    assert origin == vkey.origin and bytes.fromhex(key_id) == vkey.key_id
    assert base64.b64decode(encoded) == b"\x01" + vkey.public
    assert VerifierKey.parse(text + "\n") == vkey


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("+", "-"),
        lambda t: t + "+x",
        lambda t: "donjon.audit/0000000000000000+" + t.split("+", 1)[1],
        lambda t: t.split("+")[0] + "+00000000+" + t.split("+", 2)[2],
        lambda t: t[:-4] + "!!!!",
        lambda t: "+".join(t.split("+")[:2]) + "+" + base64.b64encode(b"\x02" * 33).decode(),
    ],
)
def test_malformed_verifier_key_is_refused(mangle: Callable[[str], str]) -> None:
    """A verifier key string with a wrong origin, id, algorithm or encoding is refused."""
    text = str(SigningKey.generate().verifier)
    with pytest.raises(CheckpointError):
        VerifierKey.parse(mangle(text))


def test_other_key_is_refused() -> None:
    """A checkpoint signed by another key does not open under this one."""
    key, other = SigningKey.generate(), SigningKey.generate()
    forged = other.sign(Checkpoint(other.origin, 5, bytes(32), 1))
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(forged, key.verifier)
    # Same origin text but the other key's signature.
    relabelled = forged.replace(other.origin, key.origin)
    with pytest.raises(CheckpointError):
        open_checkpoint(relabelled, key.verifier)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n5\n", "\n6\n"),
        ("\n5\n", "\n05\n"),
        ("time 1700000000123", "time 1700000000124"),
        ("time 1700000000123", "time  1700000000123"),
        ("\n\n\u2014", "\n\u2014"),
        ("\u2014 ", "- "),
    ],
)
def test_edited_note_is_refused(old: str, new: str) -> None:
    """Any edit of the size, time, layout or signature line is refused."""
    key = SigningKey.generate()
    note = key.sign(_checkpoint(key))
    assert old in note
    with pytest.raises(CheckpointError):
        open_checkpoint(note.replace(old, new, 1), key.verifier)


def test_flipped_root_or_signature_is_refused() -> None:
    """A changed root or a changed signature byte is refused."""
    key = SigningKey.generate()
    cp = _checkpoint(key)
    note = key.sign(cp)
    other_root = base64.b64encode(sha256(b"x").digest()).decode()
    with pytest.raises(CheckpointError, match="bad signature"):
        open_checkpoint(note.replace(base64.b64encode(cp.root).decode(), other_root), key.verifier)
    sig_line = note.split("\n")[5]
    blob = bytearray(base64.b64decode(sig_line.rsplit(" ", 1)[1]))
    blob[10] ^= 1
    bad = note.replace(sig_line, sig_line.rsplit(" ", 1)[0] + " " + base64.b64encode(blob).decode())
    with pytest.raises(CheckpointError, match="bad signature"):
        open_checkpoint(bad, key.verifier)


def test_cosigner_lines_are_skipped() -> None:
    """A second signature line by another name does not hide ours."""
    key = SigningKey.generate()
    cp = _checkpoint(key)
    note = key.sign(cp) + "\u2014 witness.example AAAA\n"
    assert open_checkpoint(note, key.verifier) == cp


def test_key_files_are_made_once_private_and_load_back(tmp_path: Path) -> None:
    """create writes a 0600 PKCS8 PEM and the verifier string, refuses to overwrite,
    and load gives the same key."""
    path, pub = tmp_path / "audit-signing.key", tmp_path / "audit-signing.pub"
    key = SigningKey.create(path, pub)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert VerifierKey.parse(pub.read_text()) == key.verifier
    assert SigningKey.load(path).verifier == key.verifier
    assert "PRIVATE" not in repr(key)
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        SigningKey.create(path, tmp_path / "other.pub")


def test_loading_a_readable_or_foreign_key_is_refused(tmp_path: Path) -> None:
    """A key others can read, a missing key and a non-PEM file are refused."""
    path = tmp_path / "k"
    SigningKey.create(path, tmp_path / "k.pub")
    os.chmod(path, 0o644)
    with pytest.raises(CheckpointError, match="readable"):
        SigningKey.load(path)
    with pytest.raises(CheckpointError, match="no audit signing key"):
        SigningKey.load(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a key")
    os.chmod(junk, 0o600)
    with pytest.raises(CheckpointError, match="not a PEM"):
        SigningKey.load(junk)
