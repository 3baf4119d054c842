"""Keys at rest: the master key and the subkeys derived from it."""

from __future__ import annotations

from donjon.vault.master import AUDIT_MAC_PURPOSE, KEY_HASH_PURPOSE, MasterKey, VaultError

__all__ = ["AUDIT_MAC_PURPOSE", "KEY_HASH_PURPOSE", "MasterKey", "VaultError"]
