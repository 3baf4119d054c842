"""The vault's base error."""

from __future__ import annotations

from donjon.errors import Error

__all__ = ["GraceEndForbidden", "GrantedTooLarge", "SecretNotFound", "VaultError"]


class VaultError(Error):
    """A key is missing, unreadable or exposed, or a secret cannot be sealed or opened."""

    title = "Key error"


class SecretNotFound(VaultError):
    """No secret of that name."""

    title = "No such secret"


class GrantedTooLarge(VaultError):
    """The values of the secrets a function is granted are more than one call carries."""

    title = "Granted secrets too large"


class GraceEndForbidden(VaultError):
    """A rotation without grace asked by neither an admin nor the secret's creator."""

    title = "Forbidden"
