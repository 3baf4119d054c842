"""The vault's rows: secrets and their versions, each version sealed (vault/envelope.py).

Nothing here sees a value or a data key in clear; the vault seals before it
stores and opens after it reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from donjon.store.audit_outbox import enlist
from donjon.store.database import StoreConflict
from donjon.store.tables import secret_versions, secrets, vault_rekeys

__all__ = ["SecretRow", "SecretStore", "SecretSummary", "VersionRow"]


@dataclass(frozen=True)
class SecretRow:
    name: str
    secret_id: str
    #: The principal that created it (its label): with an admin, who may end a grace.
    created_by: str


@dataclass(frozen=True)
class VersionRow:
    """One sealed version as stored."""

    name: str
    secret_id: str
    version: int
    ciphertext: bytes
    wrapped_key: bytes
    kek_id: str


@dataclass(frozen=True)
class SecretSummary:
    name: str
    versions: int
    latest: int
    created_at: float
    updated_at: float


class SecretStore:
    """Queries over `secrets` and `secret_versions`. Blocking: call off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, name: str) -> SecretRow | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(secrets).where(secrets.c.name == name)).one_or_none()
        return None if row is None else SecretRow(row.name, row.secret_id, row.created_by)

    def next_version(self, name: str) -> int:
        with self._engine.connect() as conn:
            last = conn.execute(
                select(func.max(secret_versions.c.version)).where(secret_versions.c.name == name)
            ).scalar_one_or_none()
        return int(last or 0) + 1

    def add(
        self, row: VersionRow, created_by: str, *, create: bool, drop_older: bool = False
    ) -> None:
        """Store a sealed version; with `create`, the secret's row too, in one transaction;
        with `drop_older`, every older version is deleted in it (no webhook accepts them).

        `StoreConflict` if the secret exists already (`create`) or that version does.
        """
        now = time.time()
        try:
            with self._engine.begin() as conn:
                if create:
                    conn.execute(
                        insert(secrets).values(
                            name=row.name,
                            secret_id=row.secret_id,
                            created_at=now,
                            created_by=created_by,
                        )
                    )
                conn.execute(
                    insert(secret_versions).values(
                        name=row.name,
                        version=row.version,
                        ciphertext=row.ciphertext,
                        wrapped_key=row.wrapped_key,
                        kek_id=row.kek_id,
                        created_at=now,
                        created_by=created_by,
                    )
                )
                facts: dict[str, int] = {"version": row.version}
                if drop_older:
                    older = (secret_versions.c.name == row.name) & (
                        secret_versions.c.version < row.version
                    )
                    facts["revoked"] = conn.execute(delete(secret_versions).where(older)).rowcount
                enlist(conn, **facts)
        except IntegrityError as e:
            raise StoreConflict(
                f"secret {row.name} (version {row.version}) exists already",
                hint="`donjon secret rotate` adds a version to an existing secret",
            ) from e

    def latest(self, name: str) -> VersionRow | None:
        newest = self.recent(name, 1)
        return newest[0][0] if newest else None

    def recent(self, name: str, most: int) -> list[tuple[VersionRow, float]]:
        """The newest `most` versions of `name`, newest first, each with when it was made."""
        query = (
            select(secret_versions, secrets.c.secret_id)
            .join(secrets, secrets.c.name == secret_versions.c.name)
            .where(secret_versions.c.name == name)
            .order_by(secret_versions.c.version.desc())
            .limit(most)
        )
        with self._engine.connect() as conn:
            return [(_version(r), float(r._mapping["created_at"])) for r in conn.execute(query)]

    def summaries(self) -> list[SecretSummary]:
        query = (
            select(
                secrets.c.name,
                func.count(secret_versions.c.version),
                func.max(secret_versions.c.version),
                secrets.c.created_at,
                func.max(secret_versions.c.created_at),
            )
            .join(secret_versions, secrets.c.name == secret_versions.c.name)
            .group_by(secrets.c.name, secrets.c.created_at)
            .order_by(secrets.c.name)
        )
        with self._engine.connect() as conn:
            return [
                SecretSummary(r[0], int(r[1]), int(r[2]), r[3], r[4]) for r in conn.execute(query)
            ]

    def names(self) -> set[str]:
        with self._engine.connect() as conn:
            return {r[0] for r in conn.execute(select(secrets.c.name))}

    def kek_ids(self) -> set[str]:
        """The key-encryption keys the stored versions are wrapped by."""
        with self._engine.connect() as conn:
            return {r[0] for r in conn.execute(select(secret_versions.c.kek_id).distinct())}

    def remove(self, name: str) -> bool:
        """Delete the secret and every version of it; False if there was none."""
        with self._engine.begin() as conn:
            conn.execute(delete(secret_versions).where(secret_versions.c.name == name))
            removed = conn.execute(delete(secrets).where(secrets.c.name == name)).rowcount > 0
            if removed:
                enlist(conn)
        return removed

    def all_versions(self) -> list[VersionRow]:
        query = select(secret_versions, secrets.c.secret_id).join(
            secrets, secrets.c.name == secret_versions.c.name
        )
        with self._engine.connect() as conn:
            return [_version(r) for r in conn.execute(query)]

    def rekeyed(self, kek_id: str) -> bool:
        """Whether a rekey to the local key `kek_id` committed (`rewrap`'s `committing`)."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(vault_rekeys.c.kek_id).where(vault_rekeys.c.kek_id == kek_id)
            ).first()
        return found is not None

    def rewrap(self, rows: Sequence[VersionRow], committing: str | None = None) -> None:
        """Replace the wrapped keys (and key ids) of `rows`, all in one transaction; with
        `committing`, the local key a rekey moves to is written in it too (`rekeyed`)."""
        with self._engine.begin() as conn:
            if committing is not None:
                conn.execute(
                    insert(vault_rekeys).values(kek_id=committing, committed_at=time.time())
                )
            for r in rows:
                done = conn.execute(
                    update(secret_versions)
                    .where(
                        (secret_versions.c.name == r.name)
                        & (secret_versions.c.version == r.version)
                    )
                    .values(wrapped_key=r.wrapped_key, kek_id=r.kek_id)
                )
                if done.rowcount != 1:
                    raise StoreConflict(
                        f"secret {r.name} version {r.version} changed during the rekey",
                        hint="run `donjon vault rekey` again",
                    )
            enlist(conn, rewrapped=len(rows))


def _version(row: Row[Any]) -> VersionRow:
    m = row._mapping
    return VersionRow(
        m["name"],
        m["secret_id"],
        int(m["version"]),
        bytes(m["ciphertext"]),
        bytes(m["wrapped_key"]),
        m["kek_id"],
    )
