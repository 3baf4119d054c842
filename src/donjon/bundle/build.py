"""Building a bundle from a source directory (client side of `donjon deploy`).

Dependencies named in requirements.txt are installed into ``.deps/`` inside the
bundle from wheels only (no package's setup code runs): the file is parsed first
and only index requirements are accepted (requirements.py), pip is given a file
written from the parsed form, with ``--only-binary=:all:``, and runs isolated
(``python -I``, in a temporary directory) with a minimal environment that holds
no Donjon credential. Everything is byte-compiled with unchecked-hash pycs, so
the sandbox, whose bundle mount is read-only, never compiles at import.

This runs on the deployer's host, for the sandbox's interpreter and platform
(`target`, which the node gives: target.py), not the deployer's. The server never
vendors; if it ever does, it must do so inside a sandbox.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from donjon._subprocess import run
from donjon.bundle.archive import BundleError, pack
from donjon.bundle.requirements import read_requirements, render_requirements
from donjon.bundle.target import RuntimeTarget
from donjon.bundle.unpack import MAX_MEMBERS, MAX_UNPACKED_BYTES
from donjon.manifest import Manifest, load_manifest

__all__ = ["DEPS_DIR", "build_bundle", "pip_environment"]

DEPS_DIR = ".deps"
_SKIP = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".venv",
    "venv",
    DEPS_DIR,
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
}


def _skipped(name: str) -> bool:
    return name in _SKIP or name.endswith(".pyc")


def _survey(src: Path) -> None:
    """Refuse, before anything is copied or opened, what no node would take: a link, a
    file that is not a regular one (a pipe would hang the copy), and a tree larger than a
    node unpacks (a sparse file costs its maker nothing and the copy all of the disk)."""
    size = count = 0
    for here, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if not _skipped(d)]
        for name in [*dirs, *(f for f in files if not _skipped(f))]:
            path = Path(here, name)
            st = path.lstat()
            rel = path.relative_to(src)
            if stat.S_ISLNK(st.st_mode):
                raise BundleError(
                    f"{rel} is a symbolic link",
                    hint="bundles hold regular files only; copy the file in instead",
                )
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise BundleError(f"{rel} is not a regular file", hint=f"remove it from {src}")
            size += st.st_size
            count += 1
            if size > MAX_UNPACKED_BYTES or count > MAX_MEMBERS:
                raise BundleError(
                    f"{src} is larger than a node takes ({MAX_UNPACKED_BYTES >> 20} MiB, "
                    f"{MAX_MEMBERS} files)",
                    hint="leave data and build output out of the function's directory",
                )


def _copy_tree(src: Path, dest: Path) -> None:
    def ignore(_dir: str, names: list[str]) -> set[str]:
        return {n for n in names if _skipped(n)}

    _survey(src)
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


#: What pip may see of the deployer's environment: where programs are, and how to
#: reach the index (proxies, index URLs, CA bundles). Never DONJON_*, never anything else.
_PIP_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "all_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_TIMEOUT",
    "PIP_RETRIES",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_FIND_LINKS",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


def pip_environment(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The whole environment of the pip run: an allowlist of `environ`, and `home` as HOME."""
    env = {k: environ[k] for k in _PIP_ENV if k in environ and not k.startswith("DONJON_")}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = str(home)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _vendor(
    requirements: Path,
    target: Path,
    find_links: Path | None,
    work: Path,
    runtime: RuntimeTarget | None,
) -> None:
    parsed = read_requirements(requirements)  # refuses options, paths and URLs: before pip
    if not parsed:
        return
    home = work / "home"
    home.mkdir(mode=0o700)
    checked = work / "requirements.txt"
    checked.write_text(render_requirements(parsed), encoding="utf-8")
    argv: list[str | Path] = [
        sys.executable,
        "-I",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--no-compile",
        "--target",
        target,
        "-r",
        checked,
    ]
    if runtime is not None:  # wheels for the sandbox's interpreter, not this one
        argv += runtime.pip_args()
    if find_links is not None:
        argv += ["--no-index", "--find-links", find_links]
    run(
        argv,
        cwd=work,
        env=pip_environment(os.environ, home),
        hint="dependencies are installed from wheels only; check requirements.txt",
    )
    for junk in target.glob("bin"):
        shutil.rmtree(junk, ignore_errors=True)


def build_bundle(
    src: Path, *, find_links: Path | None = None, target: RuntimeTarget | None = None
) -> tuple[Manifest, bytes]:
    """Validate `src`, vendor its dependencies and return (manifest, archive).

    `target`: the interpreter and platform the dependencies are for (the node's
    sandbox: `donjon deploy` asks it); None: the interpreter running this code.
    """
    manifest = load_manifest(src)
    with tempfile.TemporaryDirectory(prefix="donjon-build-") as tmp:
        root = Path(tmp) / "bundle"
        _copy_tree(src, root)
        requirements = root / "requirements.txt"
        if requirements.is_file():
            _vendor(requirements, root / DEPS_DIR, find_links, Path(tmp), target)
        compileall.compile_dir(
            root,
            ddir="/fn",  # where the sandbox mounts it: right tracebacks, same bytes every build
            # Silent: a file that does not compile is reported once, by the deploy
            # (the new version's import in its sandbox), not also printed here.
            quiet=2,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            workers=1,
        )
        return manifest, pack(root)
