"""`donjon init`: the data dir, master key, audit signing key, TLS certificate, database,
first admin key."""

from __future__ import annotations

import os
from dataclasses import dataclass

from donjon.audit import AuditEvent, AuditLog, SigningKey
from donjon.audit.opening import key_created_event
from donjon.config import Settings
from donjon.datadir import check_data_dir
from donjon.errors import Error
from donjon.gateway.tls import create_self_signed
from donjon.identity import Role, new_api_key
from donjon.store import KeyStore, connect, create_schema, holds_a_node
from donjon.store.database_marker import check_database, record_database
from donjon.store.node_lock import hold_init_lock
from donjon.vault import KEY_HASH_PURPOSE, MasterKey

__all__ = ["InitResult", "initialize"]


@dataclass(frozen=True)
class InitResult:
    created: bool
    #: The first admin key, shown once; None when the dir was already initialised.
    admin_key: str | None


def initialize(settings: Settings) -> InitResult:
    """Create everything missing; never overwrite what exists, nor reuse what another
    user could have put in the data dir (donjon/datadir.py)."""
    check_data_dir(settings.data_dir)
    check_database(settings.data_dir, settings.database_shown, own_file=settings.database is None)
    if settings.initialised and settings.master_key_path.exists():
        return InitResult(created=False, admin_key=None)
    # One init at a time on a database: two inits of two data dirs at once both found it
    # empty, and both wrote their admin key to it (store/node_lock.py); two of one data
    # dir both wrote theirs to its donjon.db. The data dir's own file is held by its node
    # lock, inside it.
    refuse_another_nodes_database(settings)  # at once, not after a wait for its node
    if settings.sqlite_path is not None and settings.sqlite_path.parent == settings.data_dir:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with hold_init_lock(settings.database_url, settings.database_shown):
        if settings.initialised and settings.master_key_path.exists():
            return InitResult(created=False, admin_key=None)  # the other init made it
        return _initialize(settings)


def _initialize(settings: Settings) -> InitResult:
    refuse_another_nodes_database(settings)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    check_data_dir(settings.data_dir)  # again: nothing can enter it from here on
    settings.bundles_dir.mkdir(mode=0o700, exist_ok=True)
    if settings.master_key_path.exists():
        master = MasterKey.load(settings.master_key_path)
    else:
        master = MasterKey.create(settings.master_key_path)
    # The audit log's own Ed25519 key: never derived from nor wrapped by the master key.
    key_made = not settings.audit_signing_key_path.exists()
    signing = (
        SigningKey.create(settings.audit_signing_key_path, settings.audit_signing_pub_path)
        if key_made
        else SigningKey.load(settings.audit_signing_key_path)
    )
    if not settings.tls_cert_path.exists():
        create_self_signed(settings.tls_cert_path, settings.tls_key_path)
    if settings.database is not None:  # which database the data dir's state is in
        record_database(settings.data_dir, settings.database_shown)
    engine = connect(settings.database_url)
    try:
        create_schema(engine)
        if settings.sqlite_path is not None:
            os.chmod(settings.sqlite_path, 0o600)
        key = new_api_key(master.derive(KEY_HASH_PURPOSE), "admin", Role.ADMIN)
        KeyStore(engine).add(key.record)
        audit = AuditLog(
            engine,
            signing,
            settings=settings.audit,
            checkpoint_file=settings.audit_checkpoints_path,
        )
        audit.record_now(
            AuditEvent(
                "system",
                "key.create",
                f"key:{key.record.id}",
                "ok",
                {"name": "admin", "role": "admin", "via": "init"},
            )
        )
        if key_made:
            audit.record_now(key_created_event(signing, "init"))
        audit.stop()  # the checkpoint of what init wrote
    finally:
        engine.dispose()
    return InitResult(created=True, admin_key=key.secret)


def refuse_another_nodes_database(settings: Settings) -> None:
    """Before anything is made: a database of its own (DONJON_DATABASE_URL) that already
    holds a node's keys and log belongs to that node's data dir. A new data dir's keys
    would not open its vault or continue its log, so it is not written over, and one
    database serves one data dir (several nodes sharing one is not supported yet)."""
    path = settings.sqlite_path
    if path is not None and (path.parent == settings.data_dir or not path.exists()):
        return
    engine = connect(settings.database_url)
    try:
        taken = holds_a_node(engine)
    finally:
        engine.dispose()
    if taken:
        raise Error(
            f"the database {settings.database_shown} already holds another data dir's node; "
            f"{settings.data_dir} was not initialised and nothing was changed",
            hint="serve that node's data dir (DONJON_DATA_DIR), or give this one a database "
            "of its own",
        )
