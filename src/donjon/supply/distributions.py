"""The distributions a bundle vendors: what each `.deps/*.dist-info` says, and a digest
of the files the bundle holds for it.

A distribution's digest is SHA-256 over the sorted lines ``path NUL sha256(content)``
(paths relative to ``.deps/``) of the files its RECORD lists that the bundle holds,
and of the byte-code compiled from them (``pkg/__pycache__/mod.*.pyc``: the bundle
is byte-compiled after vendoring with unchecked-hash pycs, which Python imports
without looking at the source, so they are what runs). Each hash is of the bytes
in the bundle, never RECORD's word for them; a file whose bytes differ from its
RECORD hash is counted as altered, one RECORD lists that the bundle does not hold
(console scripts, removed at build) as missing. Wheels are not kept in a bundle, so
no hash of the wheel itself can be given. Files of ``.deps/`` that no RECORD claims
are counted as unattributed.

A distribution installed beside the code (``pip install -t .``, as Lambda bundles are
made: ``requests-2.31.0.dist-info`` at the bundle's root, importable from ``/fn``) is read
the same way, its paths relative to the root; the deploy scan checks it against the
advisories already, and the SBOM (so the advisory watch) lists it with its location.
The root's other files are the function's own, so none of them counts as unattributed.

A distribution pip installed from an sdist the legacy way (setuptools' ``*.egg-info``,
with ``PKG-INFO`` for METADATA and ``installed-files.txt`` listing its files, relative to
the egg-info, without hashes) is importable as a wheel's is, and read the same way: the
deploy scan checks it, so the SBOM and the advisory watch list it too.
"""

from __future__ import annotations

import base64
import bisect
import csv
import hashlib
import io
import os
import posixpath
import re
import stat
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

from donjon.bundle import DEPS_DIR, BundleError
from donjon.supply.errors import SupplyError

__all__ = ["Distribution", "VendoredSet", "read_vendored"]

#: Bounds on what is read: a bundle is already size-limited, these keep the work small.
MAX_DISTRIBUTIONS = 2000
_MAX_METADATA = 1024 * 1024
_MAX_RECORD = 8 * 1024 * 1024
#: RECORD rows of all the distributions together. A bundle holds at most 20,000 files
#: (unpack.MAX_MEMBERS), each claimed by one distribution; RECORDs that claim the same
#: files again and again would have the node hash and look them up each time.
MAX_RECORD_ROWS = 40_000
#: The metadata folder of a distribution installed from an sdist by setuptools (legacy).
EGG_INFO = ".egg-info"
#: A `License:` field longer than this (or of several lines) is a licence's text, not its name.
_MAX_LICENSE_NAME = 100
#: Bounds on the fields the SBOM copies (a name goes into its name, purl, bom-ref and
#: dependencies, escaped): a METADATA of 1 MiB compresses to a few KB, and ten with one
#: huge field made a 420 MB document in the node's memory. Real ones are far shorter.
_MAX_NAME = 200
_MAX_VERSION = 128
_MAX_EXPRESSION = 1000
_MAX_LICENSES = 32
#: A distribution's name (PEP 508, the core metadata spec) and a version's characters.
_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
_VERSION = re.compile(r"[A-Za-z0-9.+!_-]+")
_HINT = "vendor dependencies with `donjon deploy` (wheels installed by pip)"


@dataclass(frozen=True)
class Distribution:
    """One vendored distribution as the bundle holds it."""

    name: str
    version: str
    #: SPDX expressions or licence names, as the metadata gives them (may be empty).
    licenses: tuple[str, ...]
    #: SHA-256 (hex) over the files held for it (the module docstring says how).
    sha256: str
    files: int
    #: Files whose bytes differ from their RECORD hash.
    altered: int
    #: Files RECORD lists that the bundle does not hold (or that point outside `.deps/`).
    missing: int
    #: Where it is installed: `.deps` (vendored by `donjon deploy`) or `.` (the root).
    location: str = DEPS_DIR


@dataclass(frozen=True)
class VendoredSet:
    """Every distribution of a bundle's `.deps/`, and the files none of them claims."""

    distributions: tuple[Distribution, ...]
    unattributed: int


@dataclass
class _Seen:
    """What one read of `.deps/` has hashed and listed, so nothing is done twice, and the
    RECORD rows it may still read."""

    rows_left: int = MAX_RECORD_ROWS
    digests: dict[str, bytes] = field(default_factory=dict)
    #: Each `__pycache__` folder's file names, sorted (bisected by a module's prefix).
    listings: dict[str, list[str]] = field(default_factory=dict)

    def digest(self, deps: Path, rel: str) -> bytes:
        found = self.digests.get(rel)
        if found is None:
            found = self.digests[rel] = hashlib.sha256((deps / rel).read_bytes()).digest()
        return found

    def listing(self, cache: Path, key: str) -> list[str]:
        found = self.listings.get(key)
        if found is None:
            ok = cache.is_dir() and not cache.is_symlink()
            found = self.listings[key] = sorted(p.name for p in cache.iterdir()) if ok else []
        return found


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _read(path: Path, limit: int, what: str) -> bytes:
    if not _regular(path) or path.stat().st_size > limit:
        raise BundleError(
            f"{what} is not a regular file of at most {limit} bytes",
            hint="vendor dependencies with `donjon deploy` (wheels installed by pip)",
        )
    return path.read_bytes()


def _text(value: str) -> str:
    """A metadata value fit for JSON, XML and terminals: each control or invisible
    formatting character (which XML cannot hold) shown as U+FFFD."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in value.strip())


def _licenses(fields: dict[str, list[str]]) -> tuple[str, ...]:
    """PEP 639's License-Expression, else a short License field, else the classifiers."""
    expression = fields.get("license-expression", [])
    if expression and expression[0].strip():
        if len(expression[0]) > _MAX_EXPRESSION:
            raise BundleError(
                f"a License-Expression is longer than {_MAX_EXPRESSION} characters", hint=_HINT
            )
        return (_text(expression[0]),)
    text = (fields.get("license") or [""])[0].strip()
    if text and "\n" not in text and len(text) <= _MAX_LICENSE_NAME and text.upper() != "UNKNOWN":
        return (_text(text),)
    out = []
    for classifier in fields.get("classifier", []):
        parts = [p.strip() for p in classifier.split("::")]
        if len(parts) >= 2 and parts[0] == "License" and parts[-1] != "OSI Approved":
            out.append(_text(parts[-1][:_MAX_LICENSE_NAME]))
    found = tuple(dict.fromkeys(out))
    if len(found) > _MAX_LICENSES:
        raise BundleError(f"more than {_MAX_LICENSES} licence classifiers", hint=_HINT)
    return found


def _legacy(info: Path) -> bool:
    """Whether `info` is a legacy `*.egg-info` (an sdist installed by setuptools)."""
    return info.name.endswith(EGG_INFO)


def _metadata(dist_info: Path) -> dict[str, list[str]]:
    member = "PKG-INFO" if _legacy(dist_info) else "METADATA"
    data = _read(dist_info / member, _MAX_METADATA, f"{dist_info.name}/{member}")
    message = BytesParser(policy=compat32).parsebytes(data, headersonly=True)
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key.lower(), []).append(str(value))
    return fields


def _record_rows(dist_info: Path, seen: _Seen) -> list[tuple[str, str]]:
    """RECORD's (path, hash) rows, the RECORD itself left out; [] when there is none.

    An `*.egg-info` has no RECORD: its `installed-files.txt` lists the files, relative
    to the egg-info folder, without hashes."""
    if _legacy(dist_info):
        listing = dist_info / "installed-files.txt"
        if not listing.exists():
            return []
        raw = _read(listing, _MAX_RECORD, f"{dist_info.name}/installed-files.txt")
        lines = raw.decode("utf-8", "replace").splitlines()
        rows = [(f"{dist_info.name}/{line.strip()}", "") for line in lines if line.strip()]
    else:
        rows = _wheel_rows(dist_info)
    seen.rows_left -= len(rows)
    if seen.rows_left < 0:
        raise BundleError(
            f"the vendored distributions' RECORD files list more than {MAX_RECORD_ROWS} files",
            hint="vendor dependencies with `donjon deploy` (wheels installed by pip)",
        )
    return rows


def _wheel_rows(dist_info: Path) -> list[tuple[str, str]]:
    record = dist_info / "RECORD"
    if not record.exists():
        return []
    text = _read(record, _MAX_RECORD, f"{dist_info.name}/RECORD").decode("utf-8", "replace")
    rows = []
    try:
        for row in csv.reader(io.StringIO(text)):
            if row and row[0] != f"{dist_info.name}/RECORD":
                rows.append((row[0], row[1] if len(row) > 1 else ""))
    except csv.Error as e:  # a field past csv's limit (128 KiB): no path or hash is that long
        raise BundleError(
            f"{dist_info.name}/RECORD is not a RECORD pip writes ({e})",
            hint="vendor dependencies with `donjon deploy` (wheels installed by pip)",
        ) from e
    return rows


def _inside(rel: str) -> str | None:
    """`rel` normalised, or None if it leaves `.deps/` (absolute or through ``..``)."""
    norm = posixpath.normpath(rel)
    if norm.startswith(("/", "../")) or norm in ("..", ".") or "\\" in norm:
        return None
    return norm


def _recorded_matches(expected: str, digest: bytes) -> bool:
    algorithm, _, value = expected.partition("=")
    if algorithm != "sha256" or not value:
        return True  # no hash, or one of another algorithm: nothing to compare
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return encoded == value


def _compiled(deps: Path, rel: str, seen: _Seen) -> list[str]:
    """The byte-code of `rel` (a .py file) the bundle holds."""
    if not rel.endswith(".py"):
        return []
    folder, _, name = rel.rpartition("/")
    base = f"{folder}/__pycache__" if folder else "__pycache__"
    names = seen.listing(deps / base, base)
    prefix = name[: -len(".py")] + "."
    found = []
    for n in names[bisect.bisect_left(names, prefix) :]:
        if not n.startswith(prefix):
            break
        found.append(n)
    return [f"{base}/{n}" for n in found if n.endswith(".pyc")]


def _distribution(
    deps: Path, dist_info: Path, claimed: set[str], seen: _Seen, location: str
) -> Distribution:
    fields = _metadata(dist_info)
    name = _text((fields.get("name") or [""])[0])
    version = _text((fields.get("version") or [""])[0])
    if not name or not version:
        raise BundleError(
            f"{dist_info.name}/METADATA has no Name or Version",
            hint="vendor dependencies with `donjon deploy` (wheels installed by pip)",
        )
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise BundleError(
            f"{dist_info.name}/METADATA: Name is not a distribution name (PEP 508, at most "
            f"{_MAX_NAME} characters)",
            hint=_HINT,
        )
    if len(version) > _MAX_VERSION or not _VERSION.fullmatch(version):
        raise BundleError(
            f"{dist_info.name}/METADATA: Version is not a version (PEP 440, at most "
            f"{_MAX_VERSION} characters)",
            hint=_HINT,
        )
    try:
        licenses = _licenses(fields)
    except BundleError as e:
        raise BundleError(f"{dist_info.name}/METADATA: {e.message}", hint=e.hint) from None
    lines: dict[str, str] = {}
    altered = missing = 0
    for rel, expected in _record_rows(dist_info, seen):
        norm = _inside(rel)
        if norm is None or not _regular(deps / norm):
            missing += 1
            continue
        for path in (norm, *_compiled(deps, norm, seen)):
            if path in lines:
                continue
            digest = seen.digest(deps, path)
            if path == norm and not _recorded_matches(expected, digest):
                altered += 1
            lines[path] = digest.hex()
    # The dist-info's own files are the distribution's too (RECORD lists them but itself).
    for member in sorted(p for p in dist_info.iterdir() if _regular(p)):
        rel = f"{dist_info.name}/{member.name}"
        lines.setdefault(rel, hashlib.sha256(member.read_bytes()).hexdigest())
    outer = hashlib.sha256()
    for path in sorted(lines):
        outer.update(f"{path}\0{lines[path]}\n".encode())
    claimed.update(lines)
    return Distribution(
        name, version, licenses, outer.hexdigest(), len(lines), altered, missing, location
    )


def _unattributed(deps: Path, claimed: set[str]) -> int:
    count = 0
    for dirpath, dirnames, filenames in os.walk(deps):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(deps).as_posix()
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            count += rel not in claimed
    return count


def _dist_infos(site: Path) -> list[Path]:
    """The `*.dist-info` and `*.egg-info` folders of `site` (none if it is missing or a
    symlink): both are importable from it, so both are components."""
    if not site.is_dir() or site.is_symlink():
        return []
    found = [*site.glob("*.dist-info"), *site.glob(f"*{EGG_INFO}")]
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def read_vendored(tree: Path) -> VendoredSet:
    """The distributions vendored in the bundle tree `tree`: in `.deps/`, then those
    installed at its root.

    `BundleError` (the deploy is refused, nothing changed) for a distribution whose
    metadata is missing, oversized or lacks a name or version.
    """
    deps = tree / DEPS_DIR
    sites = [(deps, DEPS_DIR, _dist_infos(deps)), (tree, ".", _dist_infos(tree))]
    if sum(len(infos) for _, _, infos in sites) > MAX_DISTRIBUTIONS:
        raise BundleError(f"the bundle vendors more than {MAX_DISTRIBUTIONS} distributions")
    found: list[Distribution] = []
    unattributed = 0
    rows_left = MAX_RECORD_ROWS
    try:
        for site, location, infos in sites:
            claimed: set[str] = set()
            seen = _Seen(rows_left)  # one budget of RECORD rows for the whole bundle
            found += (_distribution(site, info, claimed, seen, location) for info in infos)
            rows_left = seen.rows_left
            if location == DEPS_DIR and deps.is_dir() and not deps.is_symlink():
                unattributed = _unattributed(deps, claimed)
        return VendoredSet(tuple(found), unattributed)
    except OSError as e:
        raise SupplyError(
            f"cannot read the bundle's vendored distributions ({os.strerror(e.errno or 0)})",
            hint="the server log may say more",
        ) from e
