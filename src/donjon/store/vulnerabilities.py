"""What the advisory watch knows of deployed versions (lifecycle/advisory_watch.py).

- `advisory_findings`: a row per (function, version, package, advisory) the advisory
  data said covers that version; `cleared_at` set once the data stopped saying so.
- `advisory_checked`: the versions the watch has checked at least once.
- `advisory_watch`: one row, the digest of the advisory data last checked against.

Nodes sharing a database decide through it who reports what: `open_finding` and
`clear_finding` change a row only if nobody did already (an insert that conflicts, an
update that finds nothing to change), so exactly one node writes each finding's audit
record and raises its alert, and a restart raises nothing again.

The alert goes through an outbox: a finding is opened with `reported_at` NULL, then a
node claims it (`claim_report`: an update that sets `reported_at` only where it is
NULL), writes its record, and on failure releases the claim (`release_report`), so a
record that failed, or a node that died between the two, is retried by a later pass.
Blocking: call off the event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Float,
    Integer,
    Row,
    String,
    Table,
    Text,
    and_,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from donjon.store.tables import metadata

__all__ = [
    "VersionFinding",
    "VersionKey",
    "VulnerabilityStore",
    "advisory_checked",
    "advisory_findings",
    "advisory_watch",
    "fits",
]

#: (function name, version number).
VersionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class VersionFinding:
    """One deployed version that one advisory covers, through one of its packages."""

    function: str
    version: int
    package: str
    installed: str
    advisory: str
    aliases: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    #: The advisory's severity, as the scanner grades it (low, medium, high, critical).
    severity: str = "high"
    summary: str = ""

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What identifies it (the table's primary key)."""
        return (self.function, self.version, self.package, self.advisory)

    @property
    def names(self) -> frozenset[str]:
        """Its advisory's id and aliases: any of them names the same weakness."""
        return frozenset((self.advisory, *self.aliases))

    def detail(self) -> dict[str, object]:
        """What its audit records and alerts carry."""
        return {
            "function": self.function,
            "version": self.version,
            "package": self.package,
            "installed": self.installed,
            "advisory": self.advisory,
            "aliases": list(self.aliases),
            "fixed": list(self.fixed),
            "severity": self.severity,
            "summary": self.summary[:300],
        }


advisory_findings = Table(
    "advisory_findings",
    metadata,
    Column("function", String(63), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("package", String(200), primary_key=True),
    Column("advisory", String(128), primary_key=True),
    Column("installed", String(128), nullable=False),
    #: JSON lists.
    Column("aliases", Text, nullable=False),
    Column("fixed", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("found_at", Float, nullable=False),
    #: None while the version is vulnerable.
    Column("cleared_at", Float, nullable=True),
    #: None until a node claimed its audit record (the outbox; added at start if missing).
    Column("reported_at", Float, nullable=True),
)

advisory_checked = Table(
    "advisory_checked",
    metadata,
    Column("function", String(63), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("checked_at", Float, nullable=False),
)

advisory_watch = Table(
    "advisory_watch",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),
    Column("checked_at", Float, nullable=False),
)

_KEY = ("function", "version", "package", "advisory")


def fits(finding: VersionFinding) -> bool:
    """Do its key and installed version fit their columns? (PostgreSQL refuses longer.)"""
    c = advisory_findings.c
    return all(
        len(value) <= _length(column)
        for value, column in (
            (finding.function, c.function),
            (finding.package, c.package),
            (finding.advisory, c.advisory),
            (finding.installed, c.installed),
        )
    )


def _length(column: Column[str]) -> int:
    kind = column.type
    return kind.length or 0 if isinstance(kind, String) else 0


def _where(finding: VersionFinding) -> ColumnElement[bool]:
    c = advisory_findings.c
    return and_(
        c.function == finding.function,
        c.version == finding.version,
        c.package == finding.package,
        c.advisory == finding.advisory,
    )


def _finding(row: Row[Any]) -> VersionFinding:
    m = row._mapping
    return VersionFinding(
        function=str(m["function"]),
        version=int(m["version"]),
        package=str(m["package"]),
        installed=str(m["installed"]),
        advisory=str(m["advisory"]),
        aliases=tuple(json.loads(m["aliases"])),
        fixed=tuple(json.loads(m["fixed"])),
        severity=str(m["severity"]),
        summary=str(m["summary"]),
    )


class VulnerabilityStore:
    """Queries over the advisory watch's tables."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- findings -------------------------------------------------------------------

    def open_finding(self, finding: VersionFinding, *, reported: bool = False) -> bool:
        """Record `finding` as open; True if this call opened it (False: it was open).
        Unless `reported`, it waits for its record in the outbox (`unreported`)."""
        now = time.time()
        values = {
            "installed": finding.installed,
            "aliases": json.dumps(list(finding.aliases)),
            "fixed": json.dumps(list(finding.fixed)),
            "severity": finding.severity,
            "summary": finding.summary[:2000],
            "found_at": now,
            "cleared_at": None,
            "reported_at": now if reported else None,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(advisory_findings).values(
                        **dict(zip(_KEY, finding.key, strict=True)), **values
                    )
                )
            return True
        except IntegrityError:
            pass  # known: open already, or cleared once and now covered again
        with self._engine.begin() as conn:
            reopened = conn.execute(
                update(advisory_findings)
                .where(_where(finding), advisory_findings.c.cleared_at.is_not(None))
                .values(**values)
            )
        return bool(reopened.rowcount)

    def clear_finding(self, finding: VersionFinding) -> bool:
        """Mark `finding` cleared; True if this call cleared it."""
        with self._engine.begin() as conn:
            done = conn.execute(
                update(advisory_findings)
                .where(_where(finding), advisory_findings.c.cleared_at.is_(None))
                .values(cleared_at=time.time())
            )
        return bool(done.rowcount)

    def unreported(self) -> list[VersionFinding]:
        """The open findings whose record nobody has claimed yet (the outbox)."""
        c = advisory_findings.c
        query = (
            select(advisory_findings)
            .where(c.cleared_at.is_(None), c.reported_at.is_(None))
            .order_by(c.function, c.version, c.package, c.advisory)
        )
        with self._engine.connect() as conn:
            return [_finding(row) for row in conn.execute(query)]

    def claim_report(self, finding: VersionFinding) -> bool:
        """Claim `finding`'s record; True if this call claimed it (this node writes it)."""
        with self._engine.begin() as conn:
            done = conn.execute(
                update(advisory_findings)
                .where(_where(finding), advisory_findings.c.reported_at.is_(None))
                .values(reported_at=time.time())
            )
        return bool(done.rowcount)

    def release_report(self, finding: VersionFinding) -> None:
        """Give the claim back (its record failed): a later pass claims it again."""
        with self._engine.begin() as conn:
            conn.execute(update(advisory_findings).where(_where(finding)).values(reported_at=None))

    def open_findings(self, functions: Iterable[str] | None = None) -> list[VersionFinding]:
        """The open findings (of `functions`' versions), by function, version, package."""
        c = advisory_findings.c
        query = select(advisory_findings).where(c.cleared_at.is_(None))
        if functions is not None:
            query = query.where(c.function.in_(sorted(set(functions))))
        query = query.order_by(c.function, c.version, c.package, c.advisory)
        with self._engine.connect() as conn:
            return [_finding(row) for row in conn.execute(query)]

    # -- versions checked -------------------------------------------------------------

    def checked(self, versions: Iterable[VersionKey]) -> set[VersionKey]:
        """Those of `versions` the watch has checked before."""
        wanted = set(versions)
        if not wanted:
            return set()
        c = advisory_checked.c
        query = select(c.function, c.version).where(c.function.in_(sorted({f for f, _ in wanted})))
        with self._engine.connect() as conn:
            seen = {(str(f), int(v)) for f, v in conn.execute(query)}
        return seen & wanted

    def mark_checked(self, versions: Iterable[VersionKey]) -> None:
        for function, version in sorted(set(versions) - self.checked(versions)):
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(advisory_checked).values(
                            function=function, version=version, checked_at=time.time()
                        )
                    )
            except IntegrityError:
                continue  # another node checked it meanwhile

    # -- the data last checked against ------------------------------------------------

    def last_digest(self) -> str | None:
        with self._engine.connect() as conn:
            value = conn.execute(
                select(advisory_watch.c.digest).where(advisory_watch.c.id == 1)
            ).scalar()
        return None if value is None else str(value)

    def save_digest(self, digest: str) -> None:
        now = time.time()
        with self._engine.begin() as conn:
            done = conn.execute(
                update(advisory_watch)
                .where(advisory_watch.c.id == 1)
                .values(digest=digest, checked_at=now)
            )
            if done.rowcount:
                return
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(advisory_watch).values(id=1, digest=digest, checked_at=now))
        except IntegrityError:
            self.save_digest(digest)  # another node inserted it first: update it
