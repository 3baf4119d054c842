"""What a secret's name and value may be."""

from __future__ import annotations

import re

from donjon.vault.errors import VaultError

__all__ = ["MAX_VALUE_BYTES", "SECRET_NAME_RE", "BadSecret", "check_name", "check_value"]

#: The manifest's `permissions.secrets` pattern (manifest/model.py).
SECRET_NAME_RE = r"^[a-z][a-z0-9_-]{0,62}$"  # noqa: S105  # nosec B105 - a pattern
MAX_VALUE_BYTES = 64 * 1024
_NAME = re.compile(SECRET_NAME_RE)


class BadSecret(VaultError):
    """A secret name or value that the vault refuses."""

    title = "Invalid secret"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name)[:80]
        raise BadSecret(
            f"{shown} is not a secret name",
            hint="a lowercase letter, then up to 62 of a-z, 0-9, '-' and '_'",
        )
    return name


def check_value(value: object) -> str:
    """A value is text of 1 byte to 64 KiB (UTF-8); never echoed in the error."""
    if not isinstance(value, str):
        raise BadSecret("the secret value is not text", hint="give the value as a JSON string")
    if not value:
        raise BadSecret("the secret value is missing or empty", hint="give a non-empty value")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise BadSecret(
            f"the secret value is over {MAX_VALUE_BYTES} bytes",
            hint="store a smaller value (a key, a token, a password)",
        )
    if "\0" in value:
        raise BadSecret("the secret value holds a NUL character", hint="store text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadSecret("the secret value is not valid text", hint="store UTF-8 text") from None
    return value
