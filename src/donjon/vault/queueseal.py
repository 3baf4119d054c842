"""Async invocations at rest: each queued event, and each result, sealed like a log.

An event may carry what its producer would not write to disk in the clear (a
webhook's payload, a caller's personal data), and it waits in the node's database
until it runs, and in the dead-letter queue after. Each is encrypted under a fresh
AES-256-GCM data key wrapped by the queue key-encryption key, an HKDF subkey of the
master key (purpose `donjon/queue-kek/v1`, apart from the vault's and the logs').
The associated data names the invocation and the part (event or result), so a
ciphertext moved to another row, or from event to result, fails to open.
Synchronous: the queue calls it in its database threads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from donjon.vault.envelope import gcm_decrypt, gcm_encrypt, new_data_key
from donjon.vault.errors import VaultError
from donjon.vault.master import MasterKey

__all__ = ["QUEUE_KEK_PURPOSE", "QueueSealer", "Sealed"]

QUEUE_KEK_PURPOSE = "donjon/queue-kek/v1"


def _aad(invocation_id: str, part: str) -> bytes:
    return f"donjon-queue/v1\0{part}\0{invocation_id}".encode()


@dataclass(frozen=True, slots=True)
class Sealed:
    ciphertext: bytes
    wrapped_key: bytes
    kek_id: str


class QueueSealer:
    """Seals and opens the events and results of async invocations."""

    def __init__(self, master: MasterKey) -> None:
        self._kek = master.derive(QUEUE_KEK_PURPOSE)
        digest = hashlib.sha256(b"donjon-queue-kek-id\0" + self._kek.reveal()).hexdigest()
        self.kek_id = "local:" + digest[:16]

    def seal(self, invocation_id: str, part: str, plain: bytes) -> Sealed:
        data_key = new_data_key()
        ciphertext = gcm_encrypt(data_key, plain, _aad(invocation_id, part))
        wrapped = gcm_encrypt(self._kek.reveal(), data_key, _aad(invocation_id, part + "-key"))
        return Sealed(ciphertext, wrapped, self.kek_id)

    def open(self, invocation_id: str, part: str, sealed: Sealed) -> bytes:
        if sealed.kek_id != self.kek_id:
            raise VaultError(
                f"the {part} of invocation {invocation_id} was sealed by key {sealed.kek_id}, "
                "which this node does not hold",
                hint="start the node with the master key that wrote it",
            )
        data_key = gcm_decrypt(
            self._kek.reveal(),
            sealed.wrapped_key,
            _aad(invocation_id, part + "-key"),
            f"the data key of invocation {invocation_id}'s {part}",
        )
        return gcm_decrypt(
            data_key,
            sealed.ciphertext,
            _aad(invocation_id, part),
            f"invocation {invocation_id}'s {part}",
        )
