"""Reading declared and installed dependencies from every format a Python project uses.

requirements files (pins, ranges, ``-r`` includes, markers, ``name @ URL`` of a wheel
or sdist at the version its file name gives; which files are, project.py says),
Pipfile.lock, poetry.lock, uv.lock, pyproject.toml (PEP 621, PEP 735 groups, Poetry's
``^``/``~`` constraints, uv) and the METADATA of distributions vendored in a bundle's
``.deps/``.
"""

from __future__ import annotations

import enum
import json
import posixpath
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from donjon.scan.model import Location
from donjon.scan.project import SourceFile

__all__ = ["Dependency", "Precision", "parse_dependency_file", "parse_installed"]

#: `-r FILE`, `-c FILE`, their long forms, and the short ones with the value attached
#: (`-rbase.txt`), as pip's option parser reads them.
_INCLUDE = re.compile(r"^(?:(?:--requirement|--constraint)[\s=]+|-[rc]\s*)(\S+)")


#: What ends a line of an email header block (email.feedparser's NLCRE).
_EMAIL_LINES = re.compile(r"\r\n|\r|\n")


class Precision(enum.IntEnum):
    """How exactly a declaration says which version is in use."""

    RANGE = 1  # a specifier: several versions may be installed
    PINNED = 2  # == in a requirements file or pyproject
    LOCKED = 3  # a lock file
    INSTALLED = 4  # vendored in .deps/


@dataclass(frozen=True)
class Dependency:
    """One dependency as declared (or installed) at one place."""

    name: str
    specifier: SpecifierSet
    version: Version | None
    precision: Precision
    location: Location

    @property
    def display(self) -> str:
        return f"{self.name}=={self.version}" if self.version else f"{self.name}{self.specifier}"


def _line_of(source: SourceFile, needle: str, start: int = 0) -> int:
    for number, line in enumerate(source.lines[start:], start=start + 1):
        if needle in line:
            return number
    return 1


def _archive_version(name: str, url: str) -> Version | None:
    """The version a ``name @ URL`` requirement installs when the URL names a wheel or an
    sdist of `name` (``.../PyYAML-5.3-cp38-...whl``: pip installs exactly that)."""
    filename = unquote(urlsplit(url).path.rpartition("/")[2])
    try:
        if filename.endswith(".whl"):
            found, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            found, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None
    return version if found == canonicalize_name(name) else None


def _from_requirement(
    text: str, source: SourceFile, line: int, precision: Precision
) -> Dependency | None:
    """A PEP 508 string; None when it does not apply here or names no index version."""
    req = Requirement(text)
    for spec in req.specifier:
        try:
            if spec.operator != "===":
                Version(spec.version.removesuffix(".*"))
        except ValueError as e:  # matching it would raise: a number past int()'s limit
            raise InvalidRequirement(f"{spec.operator} names no version") from e
    try:
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            return None
    except UndefinedEnvironmentName:
        pass
    if req.url:
        pinned = _archive_version(req.name, req.url)
        if pinned is None:
            return None  # a VCS or directory URL: no version to check
        return Dependency(
            canonicalize_name(req.name),
            SpecifierSet(f"=={pinned}"),
            pinned,
            max(precision, Precision.PINNED),
            Location(source.rel, line),
        )
    pins = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
    version = None
    if len(pins) == 1:
        try:
            version = Version(pins[0].version)
        except ValueError:  # InvalidVersion, or a number past int()'s digit limit: this
            version = None  # line is a range; never a reason to drop the file's other pins
    exact = Precision.PINNED if version is not None and precision == Precision.RANGE else precision
    return Dependency(
        canonicalize_name(req.name), req.specifier, version, exact, Location(source.rel, line)
    )


def _requirements(
    source: SourceFile, files: Mapping[str, SourceFile], seen: set[str], notes: list[str]
) -> Iterator[Dependency]:
    seen.add(source.rel)
    logical = ""
    start = 0
    for number, raw in enumerate(source.lines, start=1):
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical = (logical + line).strip()
        if not logical:
            continue
        text, logical = logical, ""
        include = _INCLUDE.match(text)
        if include:
            # pip resolves an include against the including file's directory:
            # "sub/../base.txt" is "base.txt" (out of the tree, it is not found).
            target = posixpath.normpath(PurePosixPath(source.rel).parent / include.group(1))
            if target in files and target not in seen:
                yield from _requirements(files[target], files, seen, notes)
            elif target not in files:
                notes.append(
                    f"{source.rel}:{start}: included {include.group(1)} not found in "
                    "the scanned tree"
                )
            continue
        if text.startswith("-"):
            continue
        text = re.split(r"\s--?\w", text, maxsplit=1)[0].strip()  # drop --hash=... options
        try:
            dep = _from_requirement(text, source, start, Precision.RANGE)
        except InvalidRequirement:
            if not re.match(r"^(\.|/|\w+\+|https?:)", text):
                notes.append(f"{source.rel}:{start}: not a requirement: {text[:60]}")
            continue
        if dep is not None:
            yield dep


def _pipfile_lock(source: SourceFile) -> Iterator[Dependency]:
    data = json.loads(source.text)
    for section in ("default", "develop"):
        for name, info in (data.get(section) or {}).items():
            raw = str((info or {}).get("version", "")).lstrip("=")
            if raw:
                yield _locked(name, raw, source, _line_of(source, f'"{name}"'))


def _locked(name: str, raw: str, source: SourceFile, line: int) -> Dependency:
    try:
        version: Version | None = Version(raw)
    except ValueError:  # InvalidVersion, or a number past int()'s digit limit
        version = None
    spec = SpecifierSet(f"=={raw}") if version is not None else SpecifierSet()
    return Dependency(
        canonicalize_name(name), spec, version, Precision.LOCKED, Location(source.rel, line)
    )


def _toml_lock(source: SourceFile) -> Iterator[Dependency]:
    data = tomllib.loads(source.text)
    for pkg in data.get("package") or []:
        src = pkg.get("source") or {}
        if any(k in src for k in ("editable", "virtual", "directory", "path")):
            continue  # the project itself or a local path: nothing on an index to check
        if "name" in pkg and "version" in pkg:
            line = _line_of(source, f'name = "{pkg["name"]}"')
            yield _locked(str(pkg["name"]), str(pkg["version"]), source, line)


def _poetry_constraint(text: str) -> str:
    """Poetry's ``^1.2``/``~1.2``/``1.2`` constraints as PEP 440 specifiers."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("", "*"):
            continue
        if part[0] in "^~" and part[1:2] != "=":
            base = part[1:].strip()
            nums = [int(n) for n in re.findall(r"\d+", base)[:3]] or [0]
            if part[0] == "^":
                idx = next((i for i, n in enumerate(nums) if n), len(nums) - 1)
            else:
                idx = min(1, len(nums) - 1) if len(nums) > 1 else 0
            upper = [*nums[:idx], nums[idx] + 1]
            out += [f">={base}", "<" + ".".join(map(str, upper))]
        elif part[0].isdigit():
            out.append(f"=={part}")
        else:
            out.append(part)
    return ",".join(out)


def _pyproject(source: SourceFile, notes: list[str]) -> Iterator[Dependency]:
    data = tomllib.loads(source.text)
    project = data.get("project") or {}
    texts: list[str] = list(project.get("dependencies") or [])
    for group in (project.get("optional-dependencies") or {}).values():
        texts += list(group)
    for group in (data.get("dependency-groups") or {}).values():
        texts += [t for t in group if isinstance(t, str)]
    texts += list(((data.get("tool") or {}).get("uv") or {}).get("dev-dependencies") or [])
    for text in texts:
        line = _line_of(source, str(text).split(";")[0].strip())
        try:
            dep = _from_requirement(str(text), source, line, Precision.RANGE)
        except InvalidRequirement:
            notes.append(f"{source.rel}:{line}: not a requirement: {str(text)[:60]}")
            continue
        if dep is not None:
            yield dep
    yield from _poetry(source, (data.get("tool") or {}).get("poetry") or {}, notes)


def _poetry(source: SourceFile, poetry: dict[str, Any], notes: list[str]) -> Iterator[Dependency]:
    tables = [poetry.get("dependencies") or {}, poetry.get("dev-dependencies") or {}]
    tables += [(g or {}).get("dependencies") or {} for g in (poetry.get("group") or {}).values()]
    for table in tables:
        for name, spec in table.items():
            if name.lower() == "python":
                continue
            raw = spec.get("version", "*") if isinstance(spec, dict) else str(spec)
            if isinstance(spec, dict) and not ("version" in spec or "extras" in spec):
                continue  # git, path or url dependency
            line = _line_of(source, f"{name} =")
            try:
                text = f"{name}{_poetry_constraint(str(raw))}"
                dep = _from_requirement(text, source, line, Precision.RANGE)
            except (InvalidRequirement, InvalidSpecifier, ValueError):
                notes.append(f"{source.rel}:{line}: unsupported constraint {name} = {raw!r}")
                continue
            if dep is not None:
                yield dep


def parse_dependency_file(
    source: SourceFile, files: Mapping[str, SourceFile], notes: list[str]
) -> list[Dependency]:
    """Every dependency `source` declares; problems go to `notes`, never raise."""
    name = PurePosixPath(source.rel).name
    try:
        if name == "Pipfile.lock":
            return list(_pipfile_lock(source))
        if name in ("poetry.lock", "uv.lock"):
            return list(_toml_lock(source))
        if name == "pyproject.toml":
            return list(_pyproject(source, notes))
        return list(_requirements(source, files, set(), notes))
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as e:
        # RecursionError: JSON or TOML nested thousands deep (json, tomllib recurse).
        notes.append(f"{source.rel}: could not be read as {name} ({type(e).__name__}: {e})")
        return []


def parse_installed(metadata: SourceFile) -> Dependency | None:
    """The name and version a vendored distribution's METADATA declares.

    It is read as email headers are (importlib.metadata and the SBOM read it so): field
    names in any case, and only an empty line ends the headers (one of blanks continues
    the field before it), so neither a `name:` field nor a line of spaces hides one."""
    fields: dict[str, tuple[str, int]] = {}
    # Lines end at CR, LF or CRLF only, as the email parser splits them: str.splitlines()
    # also ends one at a form feed or U+2028, and `Summary: x\f` would look like the end.
    for number, line in enumerate(_EMAIL_LINES.split(metadata.text), start=1):
        if not line:
            break
        if line[0] in " \t":
            continue  # a continuation of the field before
        key, _, value = line.partition(":")
        key = key.lower()
        if key in ("name", "version") and key not in fields:
            fields[key] = (value.strip(), number)
    if "name" not in fields or "version" not in fields:
        return None
    try:
        version = Version(fields["version"][0])
    except ValueError:  # InvalidVersion, or a release number past int()'s digit limit
        return None
    return Dependency(
        canonicalize_name(fields["name"][0]),
        SpecifierSet(f"=={version}"),
        version,
        Precision.INSTALLED,
        Location(metadata.rel, fields["version"][1]),
    )
