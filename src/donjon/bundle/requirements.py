"""requirements.txt, parsed and narrowed to index requirements before pip sees it.

pip treats a requirements file as a command line: a line may name a local
directory, an editable install, a ``file://`` or VCS URL, another file, or
options such as ``--no-binary`` and ``--index-url``, and several of these
make pip run a package's setup code on the deploying host. So the file is
parsed here, line by line, and only index requirements are let through: a
project name with optional extras, version specifiers, environment marker
and ``--hash`` options. Everything else is refused, naming the line.
pip then gets a file written from the parsed requirements, not the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from donjon.bundle.archive import BundleError

__all__ = ["IndexRequirement", "parse_requirements", "render_requirements"]

_OPTION_RE = re.compile(r"\s-")
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_HASH_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_HINT = (
    "requirements.txt may hold only index requirements (name, extras, version "
    "specifiers, marker, --hash=sha256:...), one a line; no options, paths or URLs"
)


@dataclass(frozen=True)
class IndexRequirement:
    """One accepted line: a requirement resolved from the package index, as wheels."""

    line: int
    requirement: Requirement
    hashes: tuple[str, ...] = ()


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments removed and ``\\`` continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT_RE.sub("", raw)
        start, before = pending if pending is not None else (number, "")
        if line.endswith("\\"):
            pending = (start, before + line[:-1] + " ")
            continue
        pending = None
        joined = (before + line).strip()
        if joined:
            out.append((start, joined))
    if pending is not None and pending[1].strip():
        out.append((pending[0], pending[1].strip()))
    return out


def _hashes(where: str, options: str) -> tuple[str, ...]:
    """The ``--hash`` options after a requirement; any other option is refused."""
    out: list[str] = []
    words = iter(options.split())
    for word in words:
        if word == "--hash":
            value = next(words, "")
        elif word.startswith("--hash="):
            value = word.removeprefix("--hash=")
        else:
            raise BundleError(
                f"{where}: only --hash=sha256:<hex> may follow a requirement, not {word[:60]!r}",
                hint=_HINT,
            )
        algorithm, _, digest = value.partition(":")
        if len(digest) != _HASH_HEX.get(algorithm, -1) or not _HEX_RE.match(digest):
            raise BundleError(
                f"{where}: {value[:80]!r} is not a sha256, sha384 or sha512 hash", hint=_HINT
            )
        out.append(f"{algorithm}:{digest.lower()}")
    return tuple(out)


def _parse_line(number: int, line: str) -> IndexRequirement:
    where = f"requirements.txt line {number}"
    shown = line if len(line) <= 120 else line[:117] + "..."
    if line.startswith("-"):
        raise BundleError(f"{where}: options are not allowed ({shown!r})", hint=_HINT)
    split = _OPTION_RE.search(line)  # options follow the requirement: " --hash=..."
    spec, options = (line[: split.start()], line[split.start() :]) if split else (line, "")
    hashes = _hashes(where, options)
    try:
        requirement = Requirement(spec.strip())
    except InvalidRequirement as e:
        kind = "a path or URL" if any(c in spec for c in "/\\:") else "not a requirement"
        reason = str(e).splitlines()[0] if str(e) else ""
        raise BundleError(
            f"{where}: {kind}, not an index requirement ({shown!r}): {reason}", hint=_HINT
        ) from e
    if requirement.url is not None:
        raise BundleError(
            f"{where}: {requirement.name} @ URL is not allowed ({shown!r})", hint=_HINT
        )
    return IndexRequirement(number, requirement, hashes)


def parse_requirements(text: str) -> list[IndexRequirement]:
    """Every requirement of `text`; `BundleError` naming the first line that is not one."""
    return [_parse_line(number, line) for number, line in _logical_lines(text)]


def render_requirements(requirements: list[IndexRequirement]) -> str:
    """The requirements file pip is given: written from the parsed form, nothing else."""
    lines = []
    for r in requirements:
        lines.append(" ".join([str(r.requirement), *(f"--hash={h}" for h in r.hashes)]))
    return "\n".join(lines) + "\n"


def read_requirements(path: Path) -> list[IndexRequirement]:
    """Parse the requirements file at `path` (UTF-8)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"cannot read requirements.txt: {e}") from e
    return parse_requirements(text)
