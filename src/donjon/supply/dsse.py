"""DSSE envelopes (securesystemslib's) signed with the node's audit signing key.

The node signs provenance with the Ed25519 key that signs its audit checkpoints
(audit/checkpoint.py), so one public key, exported as `donjon audit pubkey` prints
it, checks both offline. The two uses cannot be confused: DSSE signs its
pre-authentication encoding, which begins ``DSSEv1 ``, while every checkpoint body
and signed head begins with the log's origin ``donjon.audit/``.

A signature's keyid is the verifier key's origin and key id,
``donjon.audit/<16 hex>+<8 hex>``.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

from securesystemslib import exceptions as sslib_errors
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Key, Signature, Signer, SSlibKey

from donjon.audit import SigningKey, VerifierKey
from donjon.supply.errors import ProvenanceInvalid

__all__ = ["PAYLOAD_TYPE", "key_id", "open_envelope", "sign_envelope"]

#: The in-toto attestation framework's payload type for a Statement.
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The largest envelope read (a statement is a few KiB).
MAX_ENVELOPE_BYTES = 1024 * 1024
_HINT = "pass the envelope `donjon provenance` saved, and the key `donjon audit pubkey` prints"


def key_id(verifier: VerifierKey) -> str:
    """The keyid a signature by `verifier`'s private half carries."""
    return f"{verifier.origin}+{verifier.key_id.hex()}"


def _public_key(verifier: VerifierKey) -> SSlibKey:
    return SSlibKey(key_id(verifier), "ed25519", "ed25519", {"public": verifier.public.hex()})


class _AuditKeySigner(Signer):
    """A securesystemslib signer over the node's audit `SigningKey` (never exported)."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._public = _public_key(key.verifier)

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: Any = None
    ) -> Signer:
        raise NotImplementedError("the audit signing key is loaded by the node, not by URI")

    @property
    def public_key(self) -> Key:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public.keyid, self._key.sign_body(payload).hex())


def sign_envelope(payload: bytes, key: SigningKey) -> dict[str, Any]:
    """A DSSE envelope (its JSON form) of `payload`, an in-toto Statement, signed by `key`."""
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(_AuditKeySigner(key))
    document: dict[str, Any] = envelope.to_dict()
    return document


def _parse(document: bytes) -> Envelope:
    if len(document) > MAX_ENVELOPE_BYTES:
        raise ProvenanceInvalid("the provenance envelope is too large", hint=_HINT)
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise ProvenanceInvalid("the provenance envelope is not JSON", hint=_HINT) from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("payload"), str)
        or not isinstance(data.get("payloadType"), str)
        or not isinstance(data.get("signatures"), list)
        or not all(isinstance(s, dict) for s in data["signatures"])
    ):
        raise ProvenanceInvalid(
            "not a DSSE envelope: it needs payload, payloadType and signatures", hint=_HINT
        )
    try:
        return Envelope.from_dict(data)
    except (KeyError, TypeError, ValueError, binascii.Error, sslib_errors.FormatError) as e:
        raise ProvenanceInvalid(
            f"the DSSE envelope is malformed ({type(e).__name__})", hint=_HINT
        ) from None


def open_envelope(document: bytes, key: VerifierKey) -> bytes:
    """The payload of the DSSE envelope `document` once `key`'s signature on it checks.

    `ProvenanceInvalid` naming what failed: not an envelope, another payload type, no
    signature by `key`, or a signature that does not verify (the payload, its type or
    the signature was altered).
    """
    envelope = _parse(document)
    if envelope.payload_type != PAYLOAD_TYPE:
        raise ProvenanceInvalid(
            f"the envelope's payload type is {envelope.payload_type[:80]!r}, not {PAYLOAD_TYPE!r}",
            hint=_HINT,
        )
    public = _public_key(key)
    if public.keyid not in envelope.signatures:
        signers = ", ".join(sorted(k[:80] for k in envelope.signatures)) or "nobody"
        raise ProvenanceInvalid(
            f"the statement carries no signature by key {public.keyid} (signed by {signers})",
            hint="check the key: it must be the deploying node's `donjon audit pubkey`",
        )
    try:
        envelope.verify([public], 1)
    except sslib_errors.VerificationError:
        raise ProvenanceInvalid(
            "the statement's signature does not verify: its payload, payload type or "
            "signature was altered, or another key made it",
            hint=_HINT,
        ) from None
    return envelope.payload
