"""Persistent state: SQLAlchemy Core tables and queries (SQLite by default)."""

from __future__ import annotations

from donjon.store.database import (
    Engine,
    StorageFull,
    StoreConflict,
    StoreError,
    connect,
    create_schema,
    holds_a_node,
    storage_full,
)
from donjon.store.functions import FunctionRecord, FunctionStore
from donjon.store.issuers import IssuerRecord, IssuerStore
from donjon.store.keys import KeyRecord, KeyStore
from donjon.store.logs import InvocationLogStore
from donjon.store.quarantines import QuarantineRecord, QuarantineStore
from donjon.store.quotas import QuotaRecord, QuotaStore
from donjon.store.roles import RoleStore
from donjon.store.secrets import SecretStore, SecretSummary, VersionRow
from donjon.store.tables import metadata
from donjon.store.throttles import ThrottleRow, ThrottleStore
from donjon.store.vulnerabilities import VersionFinding, VulnerabilityStore

__all__ = [
    "Engine",
    "FunctionRecord",
    "FunctionStore",
    "InvocationLogStore",
    "IssuerRecord",
    "IssuerStore",
    "KeyRecord",
    "KeyStore",
    "QuarantineRecord",
    "QuarantineStore",
    "QuotaRecord",
    "QuotaStore",
    "RoleStore",
    "SecretStore",
    "SecretSummary",
    "StorageFull",
    "StoreConflict",
    "StoreError",
    "ThrottleRow",
    "ThrottleStore",
    "VersionFinding",
    "VersionRow",
    "VulnerabilityStore",
    "connect",
    "create_schema",
    "holds_a_node",
    "metadata",
    "storage_full",
]
