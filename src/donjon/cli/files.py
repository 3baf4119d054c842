"""Files the CLI is pointed at (a role document, a JWKS, a statement, a key), read to a bound.

A path on the command line may name a device or a pipe that never ends
(/dev/zero, a link to one committed to a repository that CI applies) or a
sparse file of terabytes; its size says nothing until it is read. Each file is
read to its bound and one byte past it, and refused if that byte came: the CLI
never reads on until the host's memory is gone.
"""

from __future__ import annotations

from pathlib import Path

from donjon.cli.output import printable
from donjon.errors import Error

__all__ = ["MAX_KEY_FILE_BYTES", "InputFileError", "key_text", "read_bounded"]

#: A verifier key is one line of about a hundred characters.
MAX_KEY_FILE_BYTES = 64 * 1024


class InputFileError(Error):
    """A file named on the command line that cannot be read, or is larger than it can be."""

    title = "Bad input file"


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of `path`, at most `limit` of them; more is an error naming `what` it is not."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputFileError(f"cannot read {printable(path)}: {e.strerror}") from e
    if len(data) > limit:
        raise InputFileError(
            f"{printable(path)} is over {limit} bytes: not {what}",
            hint="check the path: is it the file you meant, not a device, pipe or link?",
        )
    return data


def key_text(value: str) -> str:
    """`value`'s text if it names a file (read to MAX_KEY_FILE_BYTES), else `value` itself."""
    path = Path(value)
    if not path.is_file():
        return value
    data = read_bounded(path, MAX_KEY_FILE_BYTES, "a key file")
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise InputFileError(f"{printable(path)} is not text: not a key file") from e
