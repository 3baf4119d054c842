"""The schema. Audit records are stored as the exact bytes that were hashed."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "alerts",
    "alerts_indexed",
    "api_keys",
    "audit_checkpoints",
    "audit_head",
    "audit_log",
    "audit_outbox",
    "function_owners",
    "function_supply",
    "function_versions",
    "functions",
    "grant_uses",
    "invocation_logs",
    "invocations",
    "issuer_names",
    "issuers",
    "metadata",
    "roles",
    "secret_versions",
    "secrets",
    "vault_rekeys",
    "webhook_deliveries",
]

metadata = MetaData()

#: Width of a column holding a principal's label (`kind:id`): a JWT's is
#: `jwt:<issuer name>:<sub>`, up to 4 + 64 + 1 + 256 characters. PostgreSQL enforces a
#: VARCHAR's length, SQLite does not: at 64 a deploy by a long JWT subject failed there.
LABEL_LENGTH = 512

functions = Table(
    "functions",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("version", Integer, nullable=False),
    #: The principal that first deployed it (since it was last removed).
    Column("owner", String(LABEL_LENGTH), nullable=True),
    #: HMAC of the row's name, version and owner (store/version_mac.py's `pointer_mac`).
    Column("mac", String(64)),
)

#: Who owned each run of a function's versions (an incarnation: from a deploy that found
#: no function of that name to its removal). `last_version` is NULL while it is deployed.
#: A function deployed before this table has no open row: its current owner's run is
#: taken to start after the last recorded run, or at version 1 (store/functions.py).
function_owners = Table(
    "function_owners",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("first_version", Integer, primary_key=True),
    Column("last_version", Integer, nullable=True),
    Column("owner", String(LABEL_LENGTH), nullable=False),
)

function_versions = Table(
    "function_versions",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(LABEL_LENGTH), nullable=False),
    #: HMAC of the row (store/version_mac.py); NULL only in rows written before MACs.
    Column("mac", String(64)),
)

#: Each version's supply chain records (supply/): its CycloneDX SBOM (JSON, as served)
#: and its provenance statement in a DSSE envelope signed by the node's audit key;
#: written in the deploy's transaction. A version deployed before this table has its
#: SBOM made on first request and no provenance (NULL).
function_supply = Table(
    "function_supply",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("sbom", Text, nullable=False),
    Column("sbom_digest", String(64), nullable=False),
    Column("provenance", Text, nullable=True),
    Column("statement_digest", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(64), nullable=False),
    Column("functions", Text, nullable=True),
    Column("digest", LargeBinary(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("previous_digest", LargeBinary(32), nullable=True),
    Column("previous_until", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
    #: The key's own limits (issue 15; None: its role's, else the server's default).
    Column("rate", String(32), nullable=True),
    Column("burst", Integer, nullable=True),
    Column("concurrency", Integer, nullable=True),
)

roles = Table(
    "roles",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("document", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("record", LargeBinary, nullable=False),
    #: The record's RFC 6962 leaf hash, SHA-256(0x00 || record) (v1: the chain hash).
    Column("hash", LargeBinary(32), nullable=False),
)

#: Admin changes' audit records, each written in the transaction of its change and
#: deleted once the record is in the log (store/audit_outbox.py): a row left by a kill,
#: or by an append that failed, is appended by a node's drain (audit/changes.py).
audit_outbox = Table(
    "audit_outbox",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("event", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    #: The node process that wrote the row (store/outbox_owner.py); NULL: an older node.
    Column("owner", String(128)),
    #: The node process appending the record now, and since when (audit/changes.py's
    #: drain): a claim stops a second node from appending it too.
    Column("claimed_by", String(128)),
    Column("claimed_at", Float),
    #: HMAC-SHA256 (hex) of the row's id, owner and event under a subkey of the master key:
    #: a row whoever writes the database slid in is not appended as a change's record.
    Column("mac", String(64)),
)

#: An index of the audit log (audit/usage.py): the newest record that shows a
#: function using each of its grants (kind "secret" or "invoke"), written by the
#: audit writer in the same transaction as that record.
grant_uses = Table(
    "grant_uses",
    metadata,
    Column("function", String(63), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
)

#: The signed head, one row (id 1), moved in each append's transaction. Log v2
#: (format 2): seq = the tree size, hash = its RFC 6962 root, mac = the Ed25519
#: signature of the checkpoint body (origin, size, root, time ts_ms) under the
#: audit signing key. Log v1 (format NULL): seq, the chain hash and its HMAC under
#: a subkey of the master key; migrated at start (audit/migrate.py).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("mac", LargeBinary(64), nullable=False),
    Column("format", Integer, nullable=True),
    Column("ts_ms", BigInteger, nullable=True),
)

#: Signed checkpoints (audit/checkpoints.py), also written to DATA_DIR/audit-checkpoints.jsonl.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("ts", Float, nullable=False),
    #: The signed note (audit/checkpoint.py): what a verifier checks.
    Column("note", Text, nullable=False),
)

invocation_logs = Table(
    "invocation_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("function", String(63), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("outcome", String(32), nullable=False),
    #: Empty when sealed: rows written before logs were encrypted hold plaintext here.
    Column("output", Text, nullable=False),
    #: The output sealed under a per-record data key (vault/logseal.py), and that key wrapped.
    Column("sealed", LargeBinary, nullable=True),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("kek_id", String(64), nullable=True),
    #: The call's REPORT line: wall time at the gateway, peak memory its worker reported.
    Column("duration_ms", Float, nullable=True),
    Column("memory_kb", Integer, nullable=True),
    UniqueConstraint("request_id", name="uq_invocation_logs_request"),
)

#: The vault (vault/): one row per secret, one per version, only ever encrypted.
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(63), primary_key=True),
    #: Random, bound into every version's associated data: a re-created secret's
    #: versions never accept an old one's ciphertexts.
    Column("secret_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(LABEL_LENGTH), nullable=False),
)

secret_versions = Table(
    "secret_versions",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("kek_id", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(LABEL_LENGTH), nullable=False),
)

#: The local keys each rekey committed to, written in the transaction of its re-wrapped
#: rows (vault/keyring.py): a rekey of zero secrets names its key here alone, so the
#: next start can tell that it committed (and finish the key file's rename).
vault_rekeys = Table(
    "vault_rekeys",
    metadata,
    Column("kek_id", String(128), primary_key=True),
    Column("committed_at", Float, nullable=False),
)

issuers = Table(
    "issuers",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("issuer", String(512), nullable=False, unique=True),
    Column("jwks_url", String(2048), nullable=True),
    Column("jwks", Text, nullable=False),
    Column("audience", String(256), nullable=False),
    Column("roles_claim", String(128), nullable=False),
    Column("allowed_roles", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("refreshed_at", Float, nullable=False),
)

#: Every issuer name ever added, with the issuer (`iss`) it first named: a token's
#: principal is `jwt:<name>:<sub>`, and a name removed and added again for another
#: issuer would make that issuer's subjects the owners of what the first one's owned
#: (functions, async invocations and their results). Kept after the issuer goes.
issuer_names = Table(
    "issuer_names",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("issuer", String(512), nullable=False),
    Column("first_added", Float, nullable=False),
)

#: The monitor's alerts index (monitor/alerts.py): a copy of each `alert.raised`
#: record, so `GET /v1/alerts` reads no more of the log than it lists. The record
#: in `audit_log` is the proof; a row here is only a pointer to it (its `seq`).
alerts = Table(
    "alerts",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("ts", Float, nullable=False, index=True),
    Column("kind", String(128), nullable=False, index=True),
    Column("alert", Text, nullable=False),
)

#: The seq through which every `alert.raised` record of the log is in `alerts`.
alerts_indexed = Table(
    "alerts_indexed",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("through", BigInteger, nullable=False),
)

#: The webhook replay cache (triggers/webhooks/): one row per delivery id accepted under a
#: hook's secret (`hook`: ``secret:NAME``, or the path of a hook without one), kept until
#: `expires_at`; an INSERT that conflicts is a replay. Shared by
#: every node on the database, and kept across restarts; expired rows are purged.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("hook", String(255), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
    #: The node process whose delivery this is until its event is queued
    #: (store/outbox_owner.py); NULL once it is (or for a row of an older node).
    Column("claimed_by", String(255), nullable=True),
)

#: The durable queue of async invocations (triggers/queue/sql.py): one row per event,
#: from its enqueue to its outcome. A worker leases a due row (lease_token, lease_expires);
#: a lease left by a node that died expires and the row is claimed again.
invocations = Table(
    "invocations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("function", String(63), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("source", String(512), nullable=False),
    Column("type", String(256), nullable=False),
    Column("principal", String(LABEL_LENGTH), nullable=True),
    #: A token caller's roles as its token granted them, space-separated (its token is not
    #: kept): its deliveries are held to those roles' limits and quotas. NULL: none.
    Column("roles", String(1024), nullable=True),
    #: The kid of the issuer's key that signed a token caller's token (a JWKS kid is at
    #: most 256 characters: identity/jwks.py): its deliveries stop once it is withdrawn.
    Column("signed_by", String(256), nullable=True),
    #: That key's fingerprint (SHA-256 hex): its deliveries stop once the kid names
    #: another key. NULL: queued before it was kept (then the kid alone is checked).
    Column("signed_key", String(64), nullable=True),
    Column("delivery_id", String(256), nullable=True),
    Column("subject", String(1024), nullable=True),
    #: The event; sealed (vault/queueseal.py) when `event_key` is set: then `event`
    #: holds its ciphertext, `event_key` its data key wrapped under `kek_id`.
    Column("event", LargeBinary, nullable=False),
    Column("event_key", LargeBinary, nullable=True),
    Column("kek_id", String(64), nullable=True),
    #: queued | running | succeeded | failed | dead (triggers/queue/interface.py Status).
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    #: The function's `retry` when it was enqueued (or redriven).
    Column("max_attempts", Integer, nullable=False),
    Column("backoff_s", Float, nullable=False),
    Column("max_age_s", Integer, nullable=False),
    #: 1 when its request passed admission (rate buckets, quotas) as it was queued: that
    #: admission stands for its first attempt's, so one async call is counted once.
    Column("admitted", Integer, nullable=True),
    #: The function's version it was queued for (or redriven under): delivered only while
    #: that version's owner still holds the name (gateway/deliveries.py). NULL: queued
    #: before this column.
    Column("version", Integer, nullable=True),
    Column("enqueued_at", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires", Float, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("result", LargeBinary, nullable=True),
    Column("result_key", LargeBinary, nullable=True),
    Column("error_type", String(128), nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_invocations_due", "status", "next_at"),
    Index("ix_invocations_function", "function", "status"),
)
