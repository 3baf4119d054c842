"""Building a bundle from a source directory (client side of `donjon deploy`).

Dependencies named in requirements.txt are installed into ``.deps/`` inside the
bundle from wheels only (no package's setup code runs), and everything is
byte-compiled with unchecked-hash pycs, so the sandbox, whose bundle mount is
read-only, never compiles at import.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import sys
import tempfile
from pathlib import Path

from donjon._subprocess import run
from donjon.bundle.archive import BundleError, pack
from donjon.manifest import Manifest, load_manifest

__all__ = ["DEPS_DIR", "build_bundle"]

DEPS_DIR = ".deps"
_SKIP = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", DEPS_DIR, ".mypy_cache",
         ".pytest_cache", ".ruff_cache", "node_modules"}


def _copy_tree(src: Path, dest: Path) -> None:
    def ignore(_dir: str, names: list[str]) -> set[str]:
        return {n for n in names if n in _SKIP or n.endswith(".pyc")}

    try:
        shutil.copytree(src, dest, ignore=ignore, symlinks=True)
    except shutil.Error as e:
        raise BundleError(f"cannot copy {src}: {e}") from e
    for path in dest.rglob("*"):
        if path.is_symlink():
            raise BundleError(
                f"{path.relative_to(dest)} is a symbolic link",
                hint="bundles hold regular files only; copy the file in instead",
            )


def _vendor(requirements: Path, target: Path, find_links: Path | None) -> None:
    argv: list[str | Path] = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-input", "--only-binary=:all:", "--no-compile", "--target", target,
        "-r", requirements,
    ]
    if find_links is not None:
        argv += ["--no-index", "--find-links", find_links]
    run(argv, hint="dependencies are installed from wheels only; check requirements.txt")
    for junk in target.glob("bin"):
        shutil.rmtree(junk, ignore_errors=True)


def build_bundle(src: Path, *, find_links: Path | None = None) -> tuple[Manifest, bytes]:
    """Validate `src`, vendor its dependencies and return (manifest, archive)."""
    manifest = load_manifest(src)
    with tempfile.TemporaryDirectory(prefix="donjon-build-") as tmp:
        root = Path(tmp) / "bundle"
        _copy_tree(src, root)
        requirements = root / "requirements.txt"
        if requirements.is_file() and requirements.read_text().strip():
            _vendor(requirements, root / DEPS_DIR, find_links)
        compileall.compile_dir(
            root,
            ddir="/fn",  # where the sandbox mounts it: right tracebacks, same bytes every build
            quiet=1,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            workers=1,
        )
        return manifest, pack(root)
