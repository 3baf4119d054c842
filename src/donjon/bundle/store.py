"""Content-addressed bundle storage on the node: bundles/<sha256>/."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from donjon.bundle.archive import BundleError, tree_digest, unpack

__all__ = ["BundleStore"]

T = TypeVar("T")


class BundleStore:
    """Unpacked, read-only bundle trees, one per content digest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest

    def add(self, archive: bytes, inspect: Callable[[Path], T]) -> tuple[str, T]:
        """Unpack `archive`, run `inspect` on the tree (it raises to refuse the
        bundle), and keep it under its digest; returns (digest, inspect's result)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        try:
            unpack(archive, staging)
            verdict = inspect(staging)
            digest = tree_digest(staging)
            final = self.path(digest)
            if not final.exists():
                _make_read_only(staging)
                os.rename(staging, final)
            return digest, verdict
        except BundleError:
            raise
        except OSError as e:
            raise BundleError(f"cannot store bundle: {e}") from e
        finally:
            if staging.exists():
                _make_writable(staging)
                shutil.rmtree(staging, ignore_errors=True)



# Bundles live under a 0700 data dir; inside it they are made read-only for
# everyone, and the sandbox mounts them read-only as well.
def _make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chmod(p, 0o555 if os.access(p, os.X_OK) else 0o444)  # nosec B103
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o555)  # noqa: S103  # nosec B103
    os.chmod(root, 0o555)  # noqa: S103  # nosec B103


def _make_writable(root: Path) -> None:
    os.chmod(root, 0o755)  # noqa: S103  # nosec B103
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)  # noqa: S103  # nosec B103
