"""Deployed functions and their versions."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.store.audit_outbox import enlist
from donjon.store.database import StoreConflict, StoreError
from donjon.store.tables import function_owners, function_versions, functions

__all__ = ["FunctionRecord", "FunctionStore", "VersionRuns"]

#: Runs of a function's versions, each (first, last) with last None for "and after".
VersionRuns = list[tuple[int, int | None]]


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


class FunctionStore:
    """Queries over `functions` and `function_versions`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def next_version(self, name: str) -> int:
        with self._engine.connect() as conn:
            last = conn.execute(
                select(func.max(function_versions.c.version)).where(
                    function_versions.c.name == name
                )
            ).scalar_one_or_none()
        return int(last or 0) + 1

    def ever_deployed(self, name: str) -> bool:
        """Whether a version of `name` was ever deployed (removed or not)."""
        return self.next_version(name) > 1

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
                        )
                    )
                except IntegrityError as e:
                    raise StoreConflict(
                        f"{name} version {version} exists already: another deploy won the race",
                        hint="deploy again",
                    ) from e
                updated = conn.execute(
                    update(functions).where(functions.c.name == name).values(version=version)
                )
                if updated.rowcount == 0:  # no function of that name: a new owner's run
                    conn.execute(
                        insert(functions).values(name=name, version=version, owner=created_by)
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
        with self._engine.begin() as conn:
            row = conn.execute(
                select(functions.c.version, functions.c.owner).where(functions.c.name == name)
            ).one_or_none()
            if row is None:
                return False
            if conn.execute(delete(functions).where(functions.c.name == name)).rowcount == 0:
                return False  # removed meanwhile (another node): that removal closed the run
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
        return True

    def owned_versions(self, name: str, owner: str) -> VersionRuns:
        """The runs of `name`'s versions `owner` owned (deployed first after no function of
        that name was), oldest first. A function deployed before runs were kept, and still
        deployed, is its owner's from the version after the last recorded run (1 if none)."""
        run = function_owners.c
        with self._engine.connect() as conn:
            runs: VersionRuns = [
                (int(r.first_version), None if r.last_version is None else int(r.last_version))
                for r in conn.execute(
                    select(run.first_version, run.last_version)
                    .where((run.name == name) & (run.owner == owner))
                    .order_by(run.first_version)
                )
            ]
            if runs and runs[-1][1] is None:
                return runs
            current = conn.execute(
                select(functions.c.owner).where(functions.c.name == name)
            ).scalar_one_or_none()
            is_open = conn.execute(
                select(run.first_version).where((run.name == name) & run.last_version.is_(None))
            ).first()
            if current == owner and is_open is None:
                runs.append((_unrecorded_start(conn, name), None))
        return runs


def _with_owner(query: Select[Any]) -> Select[Any]:
    """`query` over function_versions (joined to functions by the caller) with the owner
    and the first version of the owner's open run (`since_version`, 1 if none is kept)."""
    run = function_owners.c
    since = (
        select(run.first_version)
        .where((run.name == function_versions.c.name) & run.last_version.is_(None))
        .scalar_subquery()
    )
    return query.add_columns(functions.c.owner, func.coalesce(since, 1).label("since_version"))


def _unrecorded_start(conn: Connection, name: str) -> int:
    """Where the run of a function deployed before runs were kept starts: after the last
    recorded run of its name (1 if none)."""
    run = function_owners.c
    last = conn.execute(
        select(func.max(run.last_version)).where(run.name == name)
    ).scalar_one_or_none()
    return int(last or 0) + 1
