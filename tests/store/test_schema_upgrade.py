"""A data dir made before roles, owners, key lifetimes and outbox owners opens and keeps
working."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from donjon.store import FunctionStore, KeyStore, SecretStore, connect, create_schema
from donjon.store.audit_outbox import AuditOutbox

_OLD_SCHEMA = [
    "CREATE TABLE functions (name VARCHAR(63) PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE function_versions (name VARCHAR(63), version INTEGER,"
    " digest VARCHAR(64) NOT NULL, manifest TEXT NOT NULL, created_at FLOAT NOT NULL,"
    " created_by VARCHAR(64) NOT NULL,"
    " PRIMARY KEY (name, version))",
    "CREATE TABLE api_keys (id VARCHAR(32) PRIMARY KEY, name VARCHAR(128) NOT NULL,"
    " role VARCHAR(16) NOT NULL, functions TEXT, digest BLOB NOT NULL,"
    " created_at FLOAT NOT NULL, revoked_at FLOAT)",
]


def test_old_data_dir_gets_the_new_columns_once(tmp_path: Path) -> None:
    """Columns are added at start, once; old functions are owned by their first deployer."""
    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        for statement in _OLD_SCHEMA:
            conn.execute(text(statement))
        conn.execute(text("INSERT INTO functions VALUES ('f', 2)"))
        for v, by in ((1, "key:first"), (2, "key:second")):
            conn.execute(
                text("INSERT INTO function_versions VALUES ('f', :v, 'd', '{}', 1.0, :by)"),
                {"v": v, "by": by},
            )
        conn.execute(
            text("INSERT INTO api_keys VALUES ('k1', 'old', 'admin', NULL, x'00', 1.0, NULL)")
        )
    create_schema(engine)
    create_schema(engine)  # a second start changes nothing
    (record,) = FunctionStore(engine).current()
    assert record.version == 2 and record.owner == "key:first"
    (key,) = KeyStore(engine).all()
    assert key.role == "admin" and key.expires_at is None and key.last_used_at is None
    KeyStore(engine).touch({"k1": 5.0})
    assert KeyStore(engine).all()[0].last_used_at == 5.0
    engine.dispose()


def test_an_old_audit_outbox_gets_its_owner_and_claim_columns(tmp_path: Path) -> None:
    """An outbox made before rows named their writer opens with the new columns; a row a
    kill left in it is read without an owner and can be claimed; vault_rekeys is made."""
    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE audit_outbox (id VARCHAR(32) PRIMARY KEY, event TEXT NOT NULL,"
                " created_at FLOAT NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO audit_outbox VALUES ('left', '{\"action\": \"x\"}', 1.0)"))
    create_schema(engine)
    create_schema(engine)
    outbox = AuditOutbox(engine)
    (row,) = outbox.waiting()
    assert (row.id, row.owner, row.claimed_by, row.claimed_at) == ("left", None, None, None)
    assert outbox.claim(row, "node-a", 2.0)
    assert outbox.waiting()[0].claimed_by == "node-a"
    assert SecretStore(engine).rekeyed("local:none") is False
    engine.dispose()
