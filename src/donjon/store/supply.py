"""Each deployed version's SBOM and signed provenance statement (`function_supply`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from donjon.store.tables import function_supply, function_versions

__all__ = ["SupplyRecord", "SupplyStore", "VersionRow"]


@dataclass(frozen=True)
class SupplyRecord:
    """What is stored for one version."""

    name: str
    version: int
    #: The CycloneDX JSON document, exactly as served.
    sbom: str
    sbom_digest: str
    #: The DSSE envelope (JSON); None for a version deployed before provenance was kept.
    provenance: str | None
    statement_digest: str | None
    created_at: float


@dataclass(frozen=True)
class VersionRow:
    """The stored facts of one version an SBOM is made from."""

    name: str
    version: int
    digest: str
    created_at: float


class SupplyStore:
    """Queries over `function_supply` (and the versions it belongs to)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @staticmethod
    def insert(conn: Connection, record: SupplyRecord) -> None:
        """Write `record` in the caller's transaction (the deploy's)."""
        conn.execute(insert(function_supply).values(**record.__dict__))

    def add_missing(self, record: SupplyRecord) -> SupplyRecord:
        """Store `record` unless the version has one already; the one stored."""
        try:
            with self._engine.begin() as conn:
                self.insert(conn, record)
        except IntegrityError:
            pass  # made meanwhile by another request or node: that one stands
        found = self.get(record.name, record.version)
        return found if found is not None else record

    def get(self, name: str, version: int) -> SupplyRecord | None:
        query = select(function_supply).where(
            (function_supply.c.name == name) & (function_supply.c.version == version)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else SupplyRecord(**row._mapping)

    def version(self, name: str, version: int) -> VersionRow | None:
        """The stored version `version` of `name` (current or not), or None."""
        query = select(
            function_versions.c.name,
            function_versions.c.version,
            function_versions.c.digest,
            function_versions.c.created_at,
        ).where((function_versions.c.name == name) & (function_versions.c.version == version))
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else VersionRow(**row._mapping)
