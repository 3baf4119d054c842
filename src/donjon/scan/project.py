"""What a scan looks at: the files of the target, found and read once.

The walk never follows symbolic links (a bundle is untrusted input: a link to
/etc/shadow must not be read, let alone quoted in a report), skips virtual
environments, caches and VCS directories, and treats a bundle's vendored
dependencies (``.deps/``) as installed distributions, not as user code.
"""

from __future__ import annotations

import codecs
import io
import os
import stat
import tokenize
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from donjon.manifest.loader import load_yaml
from donjon.scan.errors import ScanError
from donjon.scan.syntax import Syntax, parse

__all__ = ["DEPS_DIR", "ManifestDoc", "Project", "SourceFile", "discover"]

DEPS_DIR = ".deps"
MANIFEST_NAMES = frozenset({"donjon.yaml", "donjon.yml"})
DEPENDENCY_NAMES = frozenset({"Pipfile.lock", "poetry.lock", "uv.lock", "pyproject.toml"})
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES = 20_000
#: Bytes of a distribution's METADATA read: its headers come first.
MAX_METADATA_BYTES = 256 * 1024

_SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".eggs",
        "site-packages",
        ".idea",
    }
)
_TEXT_SUFFIXES = frozenset(
    {
        ".py",
        ".pyi",
        ".pyw",
        ".yaml",
        ".yml",
        ".json",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".env",
        ".sh",
        ".bash",
        ".zsh",
        ".properties",
        ".xml",
        ".js",
        ".ts",
        ".tf",
        ".tofu",
        ".tfvars",
        ".txt",
        ".pem",
        ".key",
        ".lock",
        ".template",
        ".in",
        ".ipynb",
        # A source map's sourcesContent is the sources it maps, verbatim.
        ".map",
    }
)
_TEXT_NAMES = frozenset(
    {
        "Dockerfile",
        "Procfile",
        "Pipfile",
        ".env",
        ".npmrc",
        ".pypirc",
        ".netrc",
        ".pgpass",
        ".git-credentials",
        ".htpasswd",
        "credentials",
        "id_rsa",
        "id_dsa",
        "id_ecdsa",
        "id_ed25519",
    }
)
#: Binary by their suffix beyond detect-secrets' list: compiled code, archives, databases.
_BINARY = frozenset({".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".whl", ".egg", ".db"})
#: A distribution's metadata directory, wherever it is installed.
_DIST_INFO = (".dist-info", ".egg-info")


@dataclass(frozen=True)
class SourceFile:
    """A text file of the target, already decoded."""

    path: Path
    rel: str
    text: str

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def syntax(self) -> Syntax | str:
        """The file as Python, parsed on first use and kept for the scan (syntax.py); or
        why it does not parse."""
        return parse(self.text, self.rel)

    def line(self, number: int) -> str:
        """Line `number` (1-based), or "" when out of range."""
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""


@dataclass(frozen=True)
class ManifestDoc:
    """A donjon.yaml and what yaml.safe_load made of it (None with `error` if it failed)."""

    source: SourceFile
    data: dict[str, Any] | None
    error: str = ""

    @property
    def bundle_dir(self) -> str:
        """The bundle's directory, relative to the scan root ("" for the root itself)."""
        parent = Path(self.source.rel).parent.as_posix()
        return "" if parent == "." else parent


@dataclass(frozen=True)
class Project:
    """The files of one scan target, sorted by path."""

    root: Path
    files: tuple[SourceFile, ...]
    installed: tuple[SourceFile, ...] = ()  # METADATA of vendored distributions
    notes: tuple[str, ...] = ()
    manifests: tuple[ManifestDoc, ...] = field(default=(), compare=False)

    @cached_property
    def python(self) -> tuple[SourceFile, ...]:
        return tuple(f for f in self.files if f.rel.endswith((".py", ".pyw")))

    @cached_property
    def dependency_files(self) -> tuple[SourceFile, ...]:
        return tuple(f for f in self.files if _declares_dependencies(f.rel))

    @property
    def lines(self) -> int:
        return sum(len(f.lines) for f in self.files)


def _declares_dependencies(rel: str) -> bool:
    """Whether the file at `rel` is read as a dependency declaration: a lock file or
    pyproject.toml; a requirements file as projects name them (``requirements-dev.txt``,
    ``test-requirements.txt``, ``dev_requirements.in``), or any ``.txt``/``.in`` in a
    ``requirements/`` folder (``requirements/prod.txt``)."""
    path = PurePosixPath(rel)
    if path.name in DEPENDENCY_NAMES:
        return True
    if path.suffix not in (".txt", ".in"):
        return False
    return "requirements" in path.stem or path.parent.name == "requirements"


def _read(path: Path, rel: str, notes: list[str]) -> SourceFile | None:
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or device would block or never end: a bundle must not stall the gate.
            notes.append(f"{rel}: skipped, not a regular file")
            return None
        size = info.st_size
        if size > MAX_FILE_BYTES:
            if rel.endswith(".py"):
                # Python would import it: left unread, its code would pass unchecked.
                raise ScanError(
                    f"{rel}: {size // 1024} KiB of Python, more than the scanner reads "
                    f"({MAX_FILE_BYTES // 1024 // 1024} MiB)",
                    hint="split the module; code that is not analysed does not pass the gate",
                )
            if _declares_dependencies(rel):
                # pip installs from it whatever its size: left unread, its pins would pass.
                raise ScanError(
                    f"{rel}: {size // 1024} KiB of dependency declarations, more than the "
                    f"scanner reads ({MAX_FILE_BYTES // 1024 // 1024} MiB)",
                    hint="split it; dependencies that are not checked do not pass the gate",
                )
            notes.append(f"{rel}: skipped, larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
            return None
        data = path.read_bytes()
    except OSError as e:
        notes.append(f"{rel}: could not be read ({e.strerror})")
        return None
    wide = None if rel.endswith(".py") else _wide_encoding(data)
    if wide is not None:
        return SourceFile(path, rel, data.decode(wide, "replace"))
    if b"\0" in data[:8192] and not _declares_dependencies(rel):
        # A requirements file is read whatever else it holds (a distribution's METADATA
        # too, `_metadata`): a NUL byte in a comment hides nothing from pip, so it hides
        # nothing from the scan either.
        return None
    try:
        return SourceFile(path, rel, _decode(data, python=rel.endswith(".py")))
    except (UnicodeError, LookupError, SyntaxError):
        if rel.endswith(".py"):
            notes.append(f"{rel}: skipped, not in the encoding it declares")
        return None


#: Byte order marks of the wide encodings, UTF-32's first (its LE mark starts as UTF-16's).
_WIDE_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _wide_encoding(data: bytes) -> str | None:
    """UTF-16 or UTF-32 when the file starts with its byte order mark (what Windows
    PowerShell's `>` writes): text all the same, though every other byte is NUL."""
    return next((name for mark, name in _WIDE_MARKS if data.startswith(mark)), None)


def _decode(data: bytes, *, python: bool) -> str:
    """The file's text; Python source in the encoding it declares (``# -*- coding:
    latin-1 -*-``), as Python reads it, UTF-8 otherwise.

    A byte the encoding does not hold is read as U+FFFD, never a reason to skip the file:
    Python 3.11 imports and runs a module with one in a comment (its tokenizer does not
    decode comments: a "café" an editor saved in Latin-1), and a key in a config file is
    no less hard-coded beside one."""
    if python:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        if encoding not in ("utf-8", "utf-8-sig"):
            try:
                return data.decode(encoding, "replace")
            except UnicodeError:
                # A codec with no error handler but "strict" (idna): Python decodes the
                # source strictly, so a module it imports decodes here too.
                return data.decode(encoding)
    return data.decode("utf-8-sig", "replace")


def _is_text(name: str, *, whole_tree: bool = False) -> bool:
    """Whether to read the file `name`. The gate (`whole_tree`) reads every file but those
    detect-secrets calls binary by their suffix: a bundle's function can read any file it
    holds, and a key in ``deploy/id_ed25519`` or ``page.html.j2`` is as hard-coded as one
    in main.py (files that turn out to be binary, with a NUL byte, are dropped after)."""
    if name in _TEXT_NAMES or name.startswith(".env") or Path(name).suffix in _TEXT_SUFFIXES:
        return True
    if not whole_tree:
        return False
    # Here, not at the top: the gateway imports this module at its start, and loads no
    # scanning library before a scan (tests/gateway/test_start_imports.py).
    from detect_secrets.filters.heuristic import is_non_text_file

    return not is_non_text_file(name) and Path(name).suffix not in _BINARY


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root` as reports show it: a byte of the name that is not UTF-8
    (a Latin-1 checkout's, kept by os.walk as a lone surrogate) written as ``\\xff``, since
    every report, digest and fingerprint writes the name as UTF-8."""
    rel = path.relative_to(root).as_posix()
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _metadata(info: Path, root: Path, notes: list[str]) -> SourceFile | None:
    """The METADATA (PKG-INFO) of the distribution whose metadata directory is `info`: its
    head alone, where the headers are (as the SBOM reads it, lifecycle/components.py). Not
    `_read`: a NUL byte in the description made it "binary", dropped without a word, and
    the distribution was never matched against the advisories."""
    meta = info / ("METADATA" if info.name.endswith(".dist-info") else "PKG-INFO")
    if not meta.is_file() or meta.is_symlink():
        return None
    rel = _rel(meta, root)
    try:
        with meta.open("rb") as f:
            head = f.read(MAX_METADATA_BYTES)
    except OSError as e:
        notes.append(f"{rel}: could not be read ({e.strerror})")
        return None
    return SourceFile(meta, rel, head.decode("utf-8-sig", "replace"))


def _installed_metadata(deps: Path, root: Path, notes: list[str]) -> list[SourceFile]:
    found: list[SourceFile] = []
    for dirpath, dirnames, _ in os.walk(deps):
        here = Path(dirpath)
        if len(here.relative_to(deps).parts) > 4:
            dirnames.clear()
            continue
        for name in sorted(dirnames):
            if name.endswith(_DIST_INFO) and (read := _metadata(here / name, root, notes)):
                found.append(read)
        dirnames[:] = [d for d in dirnames if not d.endswith(_DIST_INFO)]
    return found


def _parse_manifest(source: SourceFile) -> ManifestDoc:
    try:
        data = load_yaml(source.text)  # refuses aliases: a few bytes, millions of nodes
    except yaml.YAMLError as e:
        return ManifestDoc(source, None, f"not valid YAML: {e}".splitlines()[0])
    if not isinstance(data, dict):
        return ManifestDoc(source, None, "not a YAML mapping")
    return ManifestDoc(source, data)


def discover(target: Path, *, whole_tree: bool = False) -> Project:
    """Find and read the files of `target` (a directory or one file).

    Tool and cache directories (`_SKIP_DIRS`, virtual environments) are left out unless
    `whole_tree`: a deployed bundle is read entire, since its function can import any
    package in it, whatever its name (``from venv.tools import run``).
    """
    if not target.exists():
        raise ScanError(f"{target} does not exist", hint="pass a bundle directory or a file")
    root = target.resolve()
    notes: list[str] = []
    files: list[SourceFile] = []
    installed: list[SourceFile] = []
    if root.is_file():
        one = _read(root, _rel(root, root.parent), notes)
        return Project(
            root.parent,
            (one,) if one else (),
            notes=tuple(notes),
            manifests=_manifests((one,) if one else ()),
        )
    skipped_links = 0
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if DEPS_DIR in dirnames:
            installed.extend(_installed_metadata(here / DEPS_DIR, root, notes))
        # Distributions installed beside the code (`pip install -t .`, as Lambda's own
        # packaging guide does) import from the bundle's root as .deps/'s do.
        for name in sorted(d for d in dirnames if d.endswith(_DIST_INFO)):
            if not (here / name).is_symlink() and (read := _metadata(here / name, root, notes)):
                installed.append(read)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d != DEPS_DIR
            and not d.endswith(_DIST_INFO)  # a third party's metadata, read as such above
            and not (here / d).is_symlink()
            and (whole_tree or (d not in _SKIP_DIRS and not (here / d / "pyvenv.cfg").exists()))
        )
        for name in sorted(filenames):
            path = here / name
            if path.is_symlink():
                skipped_links += 1
                continue
            if not _is_text(name, whole_tree=whole_tree):
                continue
            if len(files) >= MAX_FILES:
                raise ScanError(
                    f"{target} has more than {MAX_FILES} text files",
                    hint="scan a smaller directory",
                )
            read = _read(path, _rel(path, root), notes)
            if read is not None:
                files.append(read)
    if skipped_links:
        notes.append(f"{skipped_links} symbolic link(s) not followed")
    return Project(root, tuple(files), tuple(installed), tuple(notes), _manifests(files))


def _manifests(files: tuple[SourceFile, ...] | list[SourceFile]) -> tuple[ManifestDoc, ...]:
    return tuple(_parse_manifest(f) for f in files if f.path.name in MANIFEST_NAMES)
