"""Invocation logs at rest: each record's output sealed like a secret version.

Every record gets a fresh AES-256-GCM data key; the output is encrypted under
it and the data key is wrapped by the log key-encryption key, an HKDF subkey
of the master key (purpose `donjon/log-kek/v1`, apart from the vault's, so a
`donjon vault rekey` never strands a log). Both ciphertexts carry associated
data naming the record's function and request id, so a ciphertext moved to
another row fails to decrypt. Synchronous: the audit writer thread seals, the
log reader opens, neither touches the event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from donjon.secret import Secret
from donjon.vault.envelope import gcm_decrypt, gcm_encrypt, new_data_key
from donjon.vault.errors import VaultError
from donjon.vault.master import MasterKey

__all__ = ["LOG_KEK_PURPOSE", "LogSealer", "SealedLog"]

LOG_KEK_PURPOSE = "donjon/log-kek/v1"


def _aad(function: str, request_id: str, part: str) -> bytes:
    return f"donjon-log/v1\0{part}\0{function}\0{request_id}".encode()


@dataclass(frozen=True)
class SealedLog:
    ciphertext: bytes
    wrapped_key: bytes
    kek_id: str


class LogSealer:
    """Seals and opens invocation log outputs under the master key's log subkey."""

    def __init__(self, master: MasterKey) -> None:
        self._set_kek(master.derive(LOG_KEK_PURPOSE))

    def _set_kek(self, kek: Secret[bytes]) -> None:
        self._kek: Secret[bytes] = kek
        digest = hashlib.sha256(b"donjon-log-kek-id\0" + kek.reveal()).hexdigest()
        self.kek_id = "local:" + digest[:16]

    @classmethod
    def from_kek(cls, kek: Secret[bytes]) -> LogSealer:
        """A sealer over the log subkey itself (the audit writer process gets the subkey
        over its socketpair, never the master key)."""
        sealer = cls.__new__(cls)
        sealer._set_kek(kek)
        return sealer

    @property
    def kek(self) -> Secret[bytes]:
        """The log key-encryption key (a subkey of the master key; never the master key)."""
        return self._kek

    def seal(self, function: str, request_id: str, output: str) -> SealedLog:
        data_key = new_data_key()
        ciphertext = gcm_encrypt(
            data_key, output.encode("utf-8"), _aad(function, request_id, "output")
        )
        wrapped = gcm_encrypt(self._kek.reveal(), data_key, _aad(function, request_id, "data-key"))
        return SealedLog(ciphertext, wrapped, self.kek_id)

    def open(self, function: str, request_id: str, sealed: SealedLog) -> str:
        if sealed.kek_id != self.kek_id:
            raise VaultError(
                f"the log of request {request_id} was sealed by key {sealed.kek_id}, "
                "which this node does not hold",
                hint="start the node with the master key that wrote it",
            )
        data_key = gcm_decrypt(
            self._kek.reveal(),
            sealed.wrapped_key,
            _aad(function, request_id, "data-key"),
            f"the data key of request {request_id}'s log",
        )
        plain = gcm_decrypt(
            data_key,
            sealed.ciphertext,
            _aad(function, request_id, "output"),
            f"the log of request {request_id}",
        )
        return plain.decode("utf-8")
