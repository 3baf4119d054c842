"""Deployed functions and their versions."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.secret import Secret
from donjon.store.audit_outbox import enlist
from donjon.store.database import StoreConflict, StoreError
from donjon.store.tables import function_owners, function_versions, functions, invocations
from donjon.store.version_mac import pointer_mac, version_mac

__all__ = ["FunctionRecord", "FunctionStore", "VersionRuns"]

#: The statuses of an invocation kept until it runs or is redriven or purged (not yet
#: succeeded): triggers/queue/interface.py's Status, as stored.
_KEPT = ("queued", "running", "failed", "dead")

#: Runs of a function's versions, each (first, last) with last None for "and after".
VersionRuns = tuple[tuple[int, int | None], ...]


@dataclass(frozen=True)
class FunctionRecord:
    """One deployed version of a function."""

    name: str
    version: int
    digest: str
    manifest: str
    created_at: float
    created_by: str
    #: The principal that first deployed the function (the current row's owner).
    owner: str = ""
    #: The first version of the owner's run (1 for a function deployed before runs were
    #: kept): a version before it was another deploy's, perhaps another owner's.
    since_version: int = 1
    #: When that first version was deployed (`created_at` of `since_version`): a grant
    #: another function's deploy made before it named an earlier function of the name.
    since_at: float = 0.0
    #: The row's MAC (store/version_mac.py): None in a row written before MACs.
    mac: str | None = None
    #: The MAC of the `functions` row that makes it current and names `owner`.
    pointer_mac: str | None = None


class FunctionStore:
    """Queries over `functions` and `function_versions`."""

    def __init__(self, engine: Engine, mac_key: Secret[bytes] | None = None) -> None:
        self._engine = engine
        #: The rows' MAC key (store/version_mac.py); None: rows unMACed (tests alone).
        self._mac_key = mac_key

    def _mac(self, name: str, version: int, digest: str, manifest: str, by: str) -> str | None:
        key = self._mac_key
        return None if key is None else version_mac(key, name, version, digest, manifest, by)

    def _pointer(self, name: str, version: int, owner: str | None) -> str | None:
        key = self._mac_key
        return None if key is None else pointer_mac(key, name, version, owner)

    def authentic(self, record: FunctionRecord) -> bool:
        """Whether `record`'s version row and the `functions` row that makes it current
        carry the MACs this node writes (always, with no key)."""
        if self._mac_key is None:
            return True
        mac = self._mac(
            record.name, record.version, record.digest, record.manifest, record.created_by
        )
        return _same(record.mac, mac) and self.pointer_authentic(record)

    def pointer_authentic(self, record: FunctionRecord) -> bool:
        """Whether the `functions` row (current version, owner) of `record` is this node's."""
        return self._pointed(record.name, record.version, record.owner, record.pointer_mac)

    def _pointed(self, name: str, version: int, owner: str | None, mac: str | None) -> bool:
        if self._mac_key is None:
            return True
        return _same(mac, self._pointer(name, version, owner or None))

    def seal_unsealed(self, *, versions: bool = True, pointers: bool = True) -> int:
        """Give every row written before MACs its MAC (once each: `version_mac.sealed`):
        the version rows, the `functions` rows; how many were sealed."""
        if self._mac_key is None:
            return 0
        v, f = function_versions.c, functions.c
        sealed = 0
        with self._engine.begin() as conn:
            if versions:
                for r in conn.execute(select(function_versions).where(v.mac.is_(None))).all():
                    mac = self._mac(r.name, r.version, r.digest, r.manifest, r.created_by)
                    conn.execute(
                        update(function_versions)
                        .where((v.name == r.name) & (v.version == r.version))
                        .values(mac=mac)
                    )
                    sealed += 1
            if pointers:
                for r in conn.execute(select(functions).where(f.mac.is_(None))).all():
                    mac = self._pointer(r.name, r.version, r.owner)
                    conn.execute(update(functions).where(f.name == r.name).values(mac=mac))
                    sealed += 1
        return sealed

    def next_version(self, name: str) -> int:
        with self._engine.connect() as conn:
            last = conn.execute(
                select(func.max(function_versions.c.version)).where(
                    function_versions.c.name == name
                )
            ).scalar_one_or_none()
        return int(last or 0) + 1

    def stores_digest(self, digest: str) -> bool:
        """Whether a version (of any function, deployed or not) runs the bundle `digest`."""
        query = select(function_versions.c.name).where(function_versions.c.digest == digest)
        with self._engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def kept_digests(self, keep: int) -> set[str]:
        """The bundles of each deployed function's current version and of its newest
        `keep` versions (a removed function keeps none): lifecycle/bundle_prune.py."""
        v = function_versions.c
        ranked = (
            select(
                v.digest,
                (functions.c.version == v.version).label("current"),
                func.row_number()
                .over(partition_by=v.name, order_by=v.version.desc())
                .label("newest"),
            )
            .select_from(function_versions.join(functions, functions.c.name == v.name))
            .subquery()
        )
        query = select(ranked.c.digest).where(ranked.c.current | (ranked.c.newest <= keep))
        with self._engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def ever_deployed(self, name: str) -> bool:
        """Whether a version of `name` was ever deployed (removed or not)."""
        return self.next_version(name) > 1

    def removed_holding(self, owner: str) -> set[str]:
        """The names `owner` deployed and removed, not deployed now, whose invocations of
        `owner`'s versions are still dead-lettered or pending: they keep what a function
        keeps (lifecycle/deploy_rights.py counts them as owned)."""
        run, inv = function_owners.c, invocations.c
        kept = (
            select(inv.id)
            .where(
                (inv.function == run.name)
                & inv.status.in_(_KEPT)
                & (inv.version.is_(None) | inv.version.between(run.first_version, run.last_version))
            )
            .exists()
        )
        deployed = select(functions.c.name).where(functions.c.name == run.name).exists()
        query = (
            select(run.name)
            .where((run.owner == owner) & run.last_version.is_not(None) & ~deployed & kept)
            .distinct()
        )
        try:
            with self._engine.connect() as conn:
                return set(conn.execute(query).scalars())
        except SQLAlchemyError as e:
            raise StoreError(
                f"the database did not answer for the removed functions of {owner}"
                f" ({type(e).__name__})"
            ) from e

    def add_version(
        self,
        name: str,
        version: int,
        digest: str,
        manifest: str,
        created_by: str,
        *,
        check: Callable[[FunctionRecord], object] | None = None,
        also: Callable[[Connection], object] | None = None,
    ) -> FunctionRecord:
        """Record `version` of `name` and make it current, in one transaction.

        `check` is given the record as the database holds it, read back inside
        the transaction: if it raises, the transaction rolls back and nothing is
        stored (what a node could not load at start must never be stored).
        `StoreConflict` if that version exists already (a concurrent deploy won).
        `also` writes what belongs with the version (its SBOM and provenance) in the
        same transaction.
        """
        key = (function_versions.c.name == name) & (function_versions.c.version == version)
        try:
            with self._engine.begin() as conn:
                try:
                    conn.execute(
                        insert(function_versions).values(
                            name=name,
                            version=version,
                            digest=digest,
                            manifest=manifest,
                            created_at=time.time(),
                            created_by=created_by,
                            mac=self._mac(name, version, digest, manifest, created_by),
                        )
                    )
                except IntegrityError as e:
                    raise StoreConflict(
                        f"{name} version {version} exists already: another deploy won the race",
                        hint="deploy again",
                    ) from e
                was = conn.execute(select(functions).where(functions.c.name == name)).first()
                # An owner its row's MAC does not vouch for is no owner: the deployer's run.
                owned = was is not None and self._pointed(name, was.version, was.owner, was.mac)
                owner = was.owner if owned and was is not None else created_by
                pointer = {"version": version, "owner": owner}
                pointer["mac"] = self._pointer(name, version, owner)
                if was is None:
                    conn.execute(insert(functions).values(name=name, **pointer))
                else:
                    conn.execute(
                        update(functions).where(functions.c.name == name).values(**pointer)
                    )
                if not owned:  # no function of that name: a new owner's run
                    run = function_owners.c
                    conn.execute(  # one left open by a removal an older release made
                        update(function_owners)
                        .where((run.name == name) & run.last_version.is_(None))
                        .values(last_version=version - 1)
                    )
                    conn.execute(
                        insert(function_owners).values(
                            name=name, first_version=version, owner=created_by
                        )
                    )
                record = FunctionRecord(
                    **conn.execute(
                        _with_owner(select(function_versions))
                        .join(functions, functions.c.name == function_versions.c.name)
                        .where(key)
                    )
                    .one()
                    ._mapping
                )
                if check is not None:
                    check(record)
                if also is not None:
                    also(conn)
                enlist(conn)
        except SQLAlchemyError as e:
            # Never the statement in the message: it holds the manifest.
            raise StoreError(
                f"the database did not store {name} version {version} ({type(e).__name__})",
                hint="deploy again; if it keeps failing, check the database",
            ) from e
        return record

    def current(self) -> list[FunctionRecord]:
        """The current version of every deployed function, by name."""
        query = (
            _with_owner(select(function_versions))
            .join(
                functions,
                (functions.c.name == function_versions.c.name)
                & (functions.c.version == function_versions.c.version),
            )
            .order_by(function_versions.c.name)
        )
        with self._engine.connect() as conn:
            return [FunctionRecord(**row._mapping) for row in conn.execute(query)]

    def remove(self, name: str) -> bool:
        """Undeploy `name`; its version history stays for the audit trail, and its owner's
        run of versions ends at the current one (`owned_versions`)."""
        try:
            with self._engine.begin() as conn:
                row = conn.execute(
                    delete(functions)
                    .where(functions.c.name == name)
                    .returning(functions.c.version, functions.c.owner)
                ).one_or_none()
                if row is None:
                    return False
                run = function_owners.c
                closed = conn.execute(
                    update(function_owners)
                    .where((run.name == name) & run.last_version.is_(None))
                    .values(last_version=row.version)
                ).rowcount
                if closed == 0 and row.owner:  # deployed before runs were kept
                    conn.execute(
                        insert(function_owners).values(
                            name=name,
                            first_version=_unrecorded_start(conn, name),
                            last_version=row.version,
                            owner=row.owner,
                        )
                    )
                enlist(conn)
        except SQLAlchemyError as e:
            raise StoreError(
                f"the database did not remove {name} ({type(e).__name__})",
                hint="remove it again; if it keeps failing, check the database",
            ) from e
        return True

    def owned_versions(self, name: str, owner: str) -> VersionRuns:
        """The runs of `name`'s versions `owner` owned, oldest first: each from a deploy that
        found no function of that name to the removal that ended it (`_runs_of` says how
        runs are read where the bookkeeping was not kept, or was left open)."""
        run = function_owners.c
        try:
            with self._engine.connect() as conn:
                recorded = [
                    (int(r.first_version), _int(r.last_version), str(r.owner))
                    for r in conn.execute(
                        select(run.first_version, run.last_version, run.owner)
                        .where(run.name == name)
                        .order_by(run.first_version)
                    )
                ]
                current = conn.execute(
                    select(functions.c.owner).where(functions.c.name == name)
                ).scalar_one_or_none()
                versions = [
                    (int(v.version), str(v.created_by))
                    for v in conn.execute(
                        select(function_versions.c.version, function_versions.c.created_by)
                        .where(function_versions.c.name == name)
                        .order_by(function_versions.c.version)
                    )
                ]
        except SQLAlchemyError as e:
            raise StoreError(
                f"the database did not answer for {name}'s owners ({type(e).__name__})"
            ) from e
        return tuple(
            (first, last)
            for first, last, who in _runs_of(recorded, current, versions)
            if who == owner
        )


def _same(stored: str | None, mac: str | None) -> bool:
    return stored is not None and mac is not None and hmac.compare_digest(stored, mac)


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _runs_of(
    recorded: list[tuple[int, int | None, str]],
    current: str | None,
    versions: list[tuple[int, str]],
) -> list[tuple[int, int | None, str]]:
    """Every run of a name's versions with its owner, from the `recorded` runs (first,
    last or None, owner; oldest first), the `current` owner (None: not deployed) and the
    name's `versions` (version, who deployed it; oldest first).

    A run is open (last None) only while its owner holds the name. One left open by a
    removal an older release made, the name since deployed again by another, ends before
    the first version that other deployed after it (where none: at the newest version,
    and the current owner's run is not known: nothing). A deployed function with no open
    run (deployed before runs were kept) is its owner's from after the last recorded
    run (from version 1 if none)."""
    newest = versions[-1][0] if versions else 0
    runs: list[tuple[int, int | None, str]] = []
    unknown = False  # the current owner's run could not be told
    for first, last, who in recorded:
        if last is not None or who == current:
            runs.append((first, last, who))
            continue
        # Left open, and the name is another's now (or no one's).
        later = [v for v, by in versions if v > first and by == current]
        if later:
            runs += [(first, later[0] - 1, who), (later[0], None, str(current))]
        else:
            runs.append((first, newest, who))
            unknown = current is not None
    if current is not None and not unknown and all(last is not None for _, last, _ in runs):
        start = max((last for _, last, _ in runs if last is not None), default=0) + 1
        runs.append((start, None, current))
    return runs


def _with_owner(query: Select[Any]) -> Select[Any]:
    """`query` over function_versions (joined to functions by the caller) with the owner
    and the first version of the owner's run (`since_version`): its open run's, else
    after the last recorded run (a function deployed before runs were kept), else 1."""
    run = function_owners.c
    same = run.name == function_versions.c.name
    # Correlated to the outer query's version also where `since` sits in `began` below.
    opened = (
        select(run.first_version)
        .where(same & run.last_version.is_(None))
        .correlate_except(function_owners)
    )
    after = select(func.max(run.last_version) + 1).where(same).correlate_except(function_owners)
    since = func.coalesce(opened.scalar_subquery(), after.scalar_subquery(), 1)
    first = function_versions.alias("run_first")
    began = select(first.c.created_at).where(
        (first.c.name == function_versions.c.name) & (first.c.version == since)
    )
    return query.add_columns(
        functions.c.owner,
        functions.c.mac.label("pointer_mac"),
        since.label("since_version"),
        func.coalesce(began.scalar_subquery(), 0.0).label("since_at"),
    )


def _unrecorded_start(conn: Connection, name: str) -> int:
    """Where the run of a function deployed before runs were kept starts: after the last
    recorded run of its name (1 if none)."""
    run = function_owners.c
    last = conn.execute(
        select(func.max(run.last_version)).where(run.name == name)
    ).scalar_one_or_none()
    return int(last or 0) + 1
