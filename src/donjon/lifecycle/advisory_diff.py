"""What advisory data says of deployed versions, and what changed since it was last asked.

`match` checks the components of each version (components.py) against an `AdvisoryDB`
and gives one `VersionFinding` per (function, version, package, advisory). One weakness
is often published as several records that name each other as aliases (a PYSEC record
and its GHSA): a version gets one finding for them, the first by id.

`diff` compares what was known (the `advisory_findings` rows still open) with what the
data says now, version by version: `new` findings (to alert), `cleared` ones (the
advisory was withdrawn or no longer covers that version) and `unchanged` ones. A known
finding and a new one that share an id or an alias are the same finding: data that adds
a record aliasing a known one raises nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from donjon.lifecycle.components import Component
from donjon.scan.deps.advisories import AdvisoryDB
from donjon.store.vulnerabilities import VersionFinding, VersionKey

__all__ = ["AdvisoryDiff", "VersionFinding", "VersionKey", "diff", "match"]


@dataclass(frozen=True, slots=True)
class AdvisoryDiff:
    new: tuple[VersionFinding, ...]
    cleared: tuple[VersionFinding, ...]
    unchanged: tuple[VersionFinding, ...]


def match(
    db: AdvisoryDB, components: Mapping[VersionKey, Sequence[Component]]
) -> list[VersionFinding]:
    """Every finding of `db` over the components of each version."""
    found: list[VersionFinding] = []
    for (function, version), parts in sorted(components.items()):
        for part in sorted(parts, key=lambda c: (c.name, str(c.version))):
            taken: set[str] = set()
            ranges = sorted(db.affecting(part.name, part.version), key=lambda r: r.advisory.id)
            for rng in ranges:
                adv = rng.advisory
                if {adv.id, *adv.aliases} & taken:
                    continue
                taken.update({adv.id, *adv.aliases})
                found.append(
                    VersionFinding(
                        function=function,
                        version=version,
                        package=part.name,
                        installed=str(part.version),
                        advisory=adv.id,
                        aliases=tuple(sorted(adv.aliases)),
                        fixed=tuple(str(v) for v in rng.fixed),
                        severity=adv.severity.name.lower(),
                        summary=adv.summary.splitlines()[0] if adv.summary else "",
                    )
                )
    return found


def diff(known: Iterable[VersionFinding], found: Iterable[VersionFinding]) -> AdvisoryDiff:
    """Compare the open findings of some versions with what the data says of them now.

    Both sides must cover the same versions: a version missing from `found` has had
    all its findings cleared.
    """
    by_package: dict[tuple[str, int, str], list[VersionFinding]] = {}
    for old in known:
        by_package.setdefault((old.function, old.version, old.package), []).append(old)
    matched: set[tuple[str, int, str, str]] = set()
    new: list[VersionFinding] = []
    for now in found:
        same = [
            old
            for old in by_package.get((now.function, now.version, now.package), ())
            if old.names & now.names
        ]
        if same:
            matched.update(old.key for old in same)
        else:
            new.append(now)
    every = [old for olds in by_package.values() for old in olds]
    return AdvisoryDiff(
        new=tuple(new),
        cleared=tuple(old for old in every if old.key not in matched),
        unchanged=tuple(old for old in every if old.key in matched),
    )
