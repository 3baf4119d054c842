"""The vault's base error."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["SecretNotFound", "VaultError"]


class VaultError(Error):
    """A key is missing, unreadable or exposed, or a secret cannot be sealed or opened."""

    title = "Key error"


class SecretNotFound(VaultError):
    """No secret of that name."""

    title = "No such secret"
