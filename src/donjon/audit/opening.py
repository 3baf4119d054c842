"""Opening a data dir's audit log: the signing key, the v1 migration, the sinks.

`donjon init` makes the signing key; the first start of a data dir made
before log v2 makes it too and says so in the log. A v2 log whose key is gone
is refused (a new key would sign a tree it never saw). Before the node appends
anything, the newest checkpoint of the file outside the database must be one
the database holds: a database rolled back to an older copy is refused at
start, not written on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from donjon.audit.checkpoint import CheckpointError, SigningKey, open_checkpoint
from donjon.audit.checkpoints import CheckpointFile
from donjon.audit.errors import AuditError
from donjon.audit.log import AuditEvent, AuditLog
from donjon.audit.migrate import migrate_v1
from donjon.audit.sinks import CheckpointSink, SyslogSink, WebhookSink
from donjon.audit.tree import HEAD_FORMAT
from donjon.config import AuditSettings, Settings
from donjon.vault import AUDIT_MAC_PURPOSE, MasterKey
from donjon.vault.logseal import LogSealer

__all__ = ["ensure_signing_key", "open_audit_log"]

log_ = logging.getLogger("donjon.audit")


def ensure_signing_key(settings: Settings, engine: Engine) -> tuple[SigningKey, bool]:
    """The data dir's signing key, and whether it was made just now."""
    path = settings.audit_signing_key_path
    if path.exists():
        return SigningKey.load(path), False
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT format FROM audit_head WHERE id = 1").first()
    if row is not None and row[0] == HEAD_FORMAT:
        raise AuditError(
            f"the audit signing key {path} is missing, and the log was signed with it",
            hint="restore audit-signing.key from your backup (a new key cannot vouch for "
            "the records already signed)",
        )
    settings.audit_signing_pub_path.unlink(missing_ok=True)  # a stale public half
    return SigningKey.create(path, settings.audit_signing_pub_path), True


def checkpoint_sinks(settings: Settings) -> list[CheckpointSink]:
    return sinks_for(settings.audit)


def sinks_for(audit: AuditSettings) -> list[CheckpointSink]:
    """The checkpoint sinks these settings name (the writer process makes its own)."""
    sinks: list[CheckpointSink] = []
    if audit.checkpoint_webhook:
        sinks.append(WebhookSink(audit.checkpoint_webhook))
    if audit.checkpoint_syslog:
        sinks.append(SyslogSink(audit.checkpoint_syslog))
    return sinks


def key_created_event(key: SigningKey, via: str) -> AuditEvent:
    return AuditEvent(
        "system",
        "audit.signing_key.create",
        f"audit:{key.origin}",
        "ok",
        {"verifier_key": str(key.verifier), "via": via},
    )


def open_audit_log(
    settings: Settings, engine: Engine, master: MasterKey, sealer: LogSealer | None
) -> AuditLog:
    """The node's audit log, migrated to v2 if need be and checked against the file."""
    key, created = ensure_signing_key(settings, engine)
    migration = migrate_v1(engine, master.derive(AUDIT_MAC_PURPOSE), key)
    check_file_tail(settings.audit_checkpoints_path, engine, key)
    audit = AuditLog(
        engine,
        key,
        sealer,
        settings=settings.audit,
        checkpoint_file=settings.audit_checkpoints_path,
        sinks=checkpoint_sinks(settings),
    )
    if created:
        log_.warning("made the audit signing key %s", settings.audit_signing_key_path)
        audit.record_now(key_created_event(key, "start"))
    if migration is not None:
        log_.warning("migrated the audit log to v2 (%d records)", migration.records)
        audit.record_now(
            AuditEvent(
                "system",
                "audit.migrate",
                "audit",
                "ok",
                {
                    "from": 1,
                    "to": 2,
                    "records": migration.records,
                    "v1_head": migration.v1_head.hex(),
                },
            )
        )
    return audit


def check_file_tail(path: Path, engine: Engine, key: SigningKey) -> None:
    """Refuse a database older than the newest checkpoint written outside it (at start,
    and by each audit writer process as it opens the log)."""
    last = CheckpointFile(path).last()
    if last is None:
        return
    hint = (
        "run `donjon audit verify`; if the database was restored from a backup on purpose, "
        f"move {path.name} aside (keep it: it proves what was lost)"
    )
    try:
        checkpoint = open_checkpoint(str(last["note"]), key.verifier)
    except CheckpointError as e:
        raise AuditError(
            f"the newest line of {path.name} is not a checkpoint of this log: {e.message}",
            hint=hint,
        ) from None
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT root FROM audit_checkpoints WHERE size = ?"
            if engine.dialect.paramstyle == "qmark"
            else "SELECT root FROM audit_checkpoints WHERE size = %s",
            (checkpoint.size,),
        ).first()
    if row is None or bytes(row[0]) != checkpoint.root:
        raise AuditError(
            f"the checkpoint file vouches for {checkpoint.size} records that this database "
            "does not hold: the database was rolled back to an older copy",
            hint=hint,
        )
