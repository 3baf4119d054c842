"""The OSV advisory database for PyPI: loaded once, indexed by package, queried with PEP 440.

Sources: a directory of OSV records (YAML or JSON, such as the PyPA advisory-db's
``vulns/``), an OSV ecosystem export zip (``PyPI/all.zip``: one JSON record per member),
or a directory holding such zips (the data dir after ``donjon scan --update-db``).
Withdrawn records and other ecosystems are skipped. Versions are parsed lazily, per
package, the first time a package is asked about, so loading stays I/O-bound.
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import Version

from donjon.scan.deps.advisory_cache import read_cache, source_digest, write_cache
from donjon.scan.deps.cvss import cvss3_base_score, severity_from_score
from donjon.scan.errors import ScanError
from donjon.scan.model import Severity

__all__ = ["Advisory", "AdvisoryDB", "AffectedRange"]

_MAX_RECORD_BYTES = 8 * 1024 * 1024
#: OSV's `introduced: "0"`: the start of every version.
_EVERY = Version("0")
_GHSA_SEVERITY = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "LOW": Severity.LOW,
}

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_NODES = 1_000_000


class _NodeLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Composes YAML without resolving tags: every scalar stays text (``2.10`` is no float),
    and the slow generic constructor is skipped (`_plain` builds the values)."""

    def resolve(self, kind: type, value: object, implicit: object) -> str:
        return "tag:yaml.org,2002:str"


def _plain(node: yaml.Node, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ScanError("an advisory record is too large (or full of YAML aliases)")
    if isinstance(node, yaml.ScalarNode):
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_plain(child, budget) for child in node.value]
    if isinstance(node, yaml.MappingNode):
        return {str(_plain(k, budget)): _plain(v, budget) for k, v in node.value}
    return None


def _parse_version(text: object) -> Version | None:
    try:
        return Version(str(text))
    except ValueError:  # InvalidVersion, or a release number past int()'s digit limit
        return None


@dataclass(frozen=True)
class Advisory:
    """One OSV record, as far as a finding needs it."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity
    #: Where the severity comes from: "CVSS 9.8", "GHSA high", or "unrated".
    rating: str


class AffectedRange:
    """The versions of one package an advisory affects (OSV ``affected[]`` entry)."""

    def __init__(self, advisory: Advisory, name: str, entry: dict[str, Any]) -> None:
        self.advisory = advisory
        self.name = name
        self._entry = entry

    @cached_property
    def _ranges(self) -> list[list[tuple[str, Version]]]:
        out = []
        for rng in self._entry.get("ranges") or []:
            if not isinstance(rng, dict) or rng.get("type") != "ECOSYSTEM":
                continue
            events = []
            for event in rng.get("events") or []:
                for kind, raw in dict(event).items():
                    parsed = (
                        _EVERY if (kind, str(raw)) == ("introduced", "0") else (_parse_version(raw))
                    )
                    if parsed is not None:
                        events.append((str(kind), parsed))
            out.append(sorted(events, key=lambda e: e[1]))
        return out

    @cached_property
    def versions(self) -> frozenset[Version]:
        """The versions the record lists explicitly."""
        parsed = (_parse_version(v) for v in self._entry.get("versions") or [])
        return frozenset(v for v in parsed if v is not None)

    @cached_property
    def fixed(self) -> tuple[Version, ...]:
        return tuple(sorted({v for r in self._ranges for kind, v in r if kind == "fixed"}))

    @cached_property
    def boundaries(self) -> frozenset[Version]:
        """Versions where affectedness starts or ends inclusive: candidates for range checks."""
        return frozenset(
            v for r in self._ranges for kind, v in r if kind in ("introduced", "last_affected")
        )

    def affects(self, version: Version) -> bool:
        """Whether `version` is affected. A local version (``1.11.0+vendor1``) is a build of
        its public release and is matched as that release (PEP 440 ignores the label
        against versions without one): else `last_affected: 1.11.0`, or a record listing
        ``1.11.0``, would not name a local build of it."""
        if version in self.versions:
            return True  # a record may list a local version itself
        version = Version(version.public)
        if version in self.versions:
            return True
        for events in self._ranges:
            affected = False
            for kind, at in events:
                # introduced: "0" is every version, 0a1 and 0.dev1 too (they sort below 0).
                if kind == "introduced" and (at <= version or at == _EVERY):
                    affected = True
                elif (kind in ("fixed", "limit") and at <= version) or (
                    kind == "last_affected" and at < version
                ):
                    affected = False
            if affected:
                return True
        return False


class AdvisoryDB:
    """Advisories indexed by canonical package name; immutable once loaded, safe to share."""

    def __init__(self, records: Iterable[dict[str, Any]], *, source: str = "") -> None:
        self.source = source
        self.count = 0
        self._by_package: dict[str, list[AffectedRange]] = defaultdict(list)
        #: The compact form of every record kept (what the cache stores).
        self._compact: list[dict[str, Any]] = []
        for record in records:
            compact = _compact(record)
            if compact is not None:
                self._compact.append(compact)
                self._add(compact)

    @classmethod
    def _from_compact(cls, compact: list[dict[str, Any]], source: str) -> AdvisoryDB:
        db = cls((), source=source)
        for record in compact:
            db._add(record)
        return db

    def __len__(self) -> int:
        return self.count

    def _add(self, compact: dict[str, Any]) -> None:
        """Index one compact record (`_compact`'s output, or a cached copy of it)."""
        advisory = Advisory(
            id=str(compact["id"]),
            aliases=tuple(str(a) for a in compact["aliases"]),
            summary=str(compact["summary"]),
            severity=Severity(int(compact["severity"])),
            rating=str(compact["rating"]),
        )
        for entry in compact["affected"]:
            name = str(entry["name"])
            self._by_package[name].append(AffectedRange(advisory, name, entry))
        self.count += 1

    def ranges_for(self, name: str) -> list[AffectedRange]:
        """Every affected range recorded for package `name` (any spelling)."""
        return self._by_package.get(canonicalize_name(name), [])

    def affecting(self, name: str, version: Version) -> list[AffectedRange]:
        """The advisories that affect `name` at exactly `version`."""
        return [r for r in self.ranges_for(name) if r.affects(version)]

    @classmethod
    def load(cls, path: Path, *, cache_dir: Path | None = None) -> AdvisoryDB:
        """Load OSV records from a directory or an export zip; `ScanError` if none are there.

        With `cache_dir`, the parsed records are kept there, keyed by the digest of the
        source (`advisory_cache`): the next load of an unchanged source skips the parsing.
        """
        if not path.exists():
            raise ScanError(
                f"advisory database {path} does not exist",
                hint="pass a directory of OSV records or an OSV export zip, "
                "or run `donjon scan --update-db`",
            )
        try:
            digest = source_digest(path, _MAX_RECORD_BYTES) if cache_dir is not None else ""
            db = cls._cached(cache_dir, digest, str(path)) if cache_dir is not None else None
            fresh = db is None
            if db is None:
                db = cls(_records(path), source=str(path))
        except (OSError, zipfile.BadZipFile, json.JSONDecodeError, yaml.YAMLError) as e:
            raise ScanError(
                f"could not read the advisory database {path}: {e}",
                hint="re-download it with `donjon scan --update-db`",
            ) from e
        if not db.count:
            raise ScanError(
                f"no PyPI OSV records found in {path}",
                hint="point --advisories at the vulns/ directory or the export zip",
            )
        if cache_dir is not None and fresh:
            write_cache(cache_dir, digest, db._compact)
        return db

    @classmethod
    def _cached(cls, cache_dir: Path, digest: str, source: str) -> AdvisoryDB | None:
        """The database as cached for `digest`; None when absent or of the wrong shape."""
        compact = read_cache(cache_dir, digest)
        if compact is None:
            return None
        try:
            return cls._from_compact(compact, source)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # written by another version, or damaged: parse the source again


def _compact(record: dict[str, Any]) -> dict[str, Any] | None:
    """What a scan needs of one OSV record (None for withdrawn or non-PyPI records)."""
    if not isinstance(record, dict) or record.get("withdrawn") or "id" not in record:
        return None
    affected = []
    for a in record.get("affected") or []:
        if not isinstance(a, dict) or not isinstance(a.get("package") or {}, dict):
            continue
        package = a.get("package") or {}
        if str(package.get("ecosystem", "")).lower() != "pypi":
            continue
        name = canonicalize_name(str(package.get("name", "")))
        if name:
            affected.append(
                {"name": name, "ranges": a.get("ranges") or [], "versions": a.get("versions") or []}
            )
    if not affected:
        return None
    severity, rating = _severity(record)
    return {
        "id": str(record["id"]),
        "aliases": [str(a) for a in record.get("aliases") or ()],
        "summary": str(record.get("summary") or record.get("details") or "").strip(),
        "severity": int(severity),
        "rating": rating,
        "affected": affected,
    }


def _severity(record: dict[str, Any]) -> tuple[Severity, str]:
    best: float | None = None
    for entry in record.get("severity") or []:
        if isinstance(entry, dict) and str(entry.get("type", "")).startswith("CVSS_V3"):
            score = cvss3_base_score(str(entry.get("score", "")))
            if score is not None:
                best = score if best is None else max(best, score)
    if best is not None:
        return severity_from_score(best), f"CVSS {best:.1f}"
    label = str((record.get("database_specific") or {}).get("severity", "")).upper()
    if label in _GHSA_SEVERITY:
        return _GHSA_SEVERITY[label], f"GHSA {label.lower()}"
    if str(record.get("id", "")).startswith("MAL-"):
        return Severity.CRITICAL, "malicious package"
    return Severity.HIGH, "unrated (treated as high)"


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.is_file():
        if not zipfile.is_zipfile(path):
            yield _parse(path.name, path.read_bytes())
            return
        yield from _zip_records(path)
        return
    for item in sorted(path.rglob("*")):
        if item.is_symlink() or not item.is_file():
            continue
        if item.suffix == ".zip":
            yield from _zip_records(item)
        elif item.suffix in (".json", ".yaml", ".yml") and item.stat().st_size < _MAX_RECORD_BYTES:
            yield _parse(item.name, item.read_bytes())


def _zip_records(path: Path) -> Iterator[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith((".json", ".yaml", ".yml")) and (
                info.file_size < _MAX_RECORD_BYTES
            ):
                yield _parse(info.filename, archive.read(info))


def _parse(name: str, data: bytes) -> dict[str, Any]:
    if name.endswith(".json"):
        loaded = json.loads(data)
    else:
        loader = _NodeLoader(data)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        loaded = _plain(node, [_MAX_NODES]) if node is not None else None
    return loaded if isinstance(loaded, dict) else {}
