"""Keys at rest: the master key and the subkeys derived from it."""

from __future__ import annotations

from donjon.vault.master import MasterKey, VaultError

__all__ = ["MasterKey", "VaultError"]
