"""`donjon init`: the data dir, master key, audit signing key, TLS certificate, database,
first admin key."""

from __future__ import annotations

import os
from dataclasses import dataclass

from donjon.audit import AuditEvent, AuditLog, SigningKey
from donjon.audit.opening import key_created_event
from donjon.config import Settings
from donjon.gateway.tls import create_self_signed
from donjon.identity import Role, new_api_key
from donjon.store import KeyStore, connect, create_schema
from donjon.vault import KEY_HASH_PURPOSE, MasterKey

__all__ = ["InitResult", "initialize"]


@dataclass(frozen=True)
class InitResult:
    created: bool
    #: The first admin key, shown once; None when the dir was already initialised.
    admin_key: str | None


def initialize(settings: Settings) -> InitResult:
    """Create everything missing; never overwrite what exists."""
    if settings.db_path.exists() and settings.master_key_path.exists():
        return InitResult(created=False, admin_key=None)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
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
    engine = connect(settings.database_url)
    try:
        create_schema(engine)
        os.chmod(settings.db_path, 0o600)
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
