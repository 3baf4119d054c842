"""The vault's tables: added to a data dir made before them; rows hold no values."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, inspect

from donjon.store import connect, create_schema
from donjon.store.tables import metadata


def test_existing_database_gains_the_vault_tables(tmp_path: Path) -> None:
    """A database created before the vault opens, and create_schema adds its two tables."""
    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    old = MetaData()
    for table in metadata.sorted_tables:
        if table.name not in ("secrets", "secret_versions"):
            table.to_metadata(old)
    old.create_all(engine)
    assert "secrets" not in inspect(engine).get_table_names()
    create_schema(engine)
    names = set(inspect(engine).get_table_names())
    assert {"secrets", "secret_versions", "functions", "api_keys"} <= names
    engine.dispose()
