"""Keys at rest and the secrets vault: the master key, its subkeys, envelope encryption.

Kept light (the CLI imports it): the vault's service, providers and redaction
are imported from their modules (service.py, keyring.py, command.py, redact.py).
"""

from __future__ import annotations

from donjon.vault.errors import SecretNotFound, VaultError
from donjon.vault.master import (
    AUDIT_MAC_PURPOSE,
    AUDIT_OUTBOX_PURPOSE,
    KEY_HASH_PURPOSE,
    SIGV4_SECRET_PURPOSE,
    VAULT_KEK_PURPOSE,
    VERSION_MAC_PURPOSE,
    MasterKey,
)

__all__ = [
    "AUDIT_MAC_PURPOSE",
    "AUDIT_OUTBOX_PURPOSE",
    "KEY_HASH_PURPOSE",
    "SIGV4_SECRET_PURPOSE",
    "VAULT_KEK_PURPOSE",
    "VERSION_MAC_PURPOSE",
    "MasterKey",
    "SecretNotFound",
    "VaultError",
]
