"""`KeyProvider`: what wraps and unwraps data keys (the key-encryption key's holder).

Two implementations: `LocalKeyProvider` (local.py: a subkey of a key file on
this host) and `CommandKeyProvider` (command.py: an external program, such as
a KMS client, so the master key need not sit beside the database). Async from
the first: the second does I/O.
"""

from __future__ import annotations

import abc

__all__ = ["KeyProvider"]


class KeyProvider(abc.ABC):
    """Wraps data keys under a key-encryption key it names by a key id."""

    @abc.abstractmethod
    async def wrap(self, data_key: bytes, aad: bytes) -> tuple[bytes, str]:
        """`data_key` encrypted under the current key-encryption key, and that key's id."""

    @abc.abstractmethod
    async def unwrap(self, wrapped: bytes, aad: bytes, kek_id: str) -> bytes:
        """The data key `wrap` sealed under the key `kek_id`; `VaultError` if it cannot."""

    @abc.abstractmethod
    def holds(self, kek_id: str) -> bool:
        """Whether `kek_id` names a key this provider can unwrap with."""
