"""Settings: the only module that reads the environment; everything else gets `Settings`."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from donjon.config_limits import (
    ConnectionSettings,
    LimitSettings,
    QueueSettings,
    RequestSettings,
    limit_settings,
    queue_settings,
)
from donjon.config_sandbox import DEFAULT_SANDBOX_ID_RANGE, SandboxSettings
from donjon.config_urls import DATA_DIR_DATABASE, masked_url, sqlite_file
from donjon.errors import Error
from donjon.secret import Secret

if TYPE_CHECKING:  # settings import nothing of the subsystems they configure (no cycles)
    from donjon.egress.addresses import IPNetwork

__all__ = [
    "AdvisoryWatchSettings",
    "AuditSettings",
    "ConfigError",
    "ConnectionSettings",
    "EgressSettings",
    "LimitSettings",
    "MonitorSettings",
    "QueueSettings",
    "RequestSettings",
    "SandboxSettings",
    "Settings",
    "load_settings",
]

DEFAULT_PORT = 8443


class ConfigError(Error):
    """A setting is missing or malformed."""

    title = "Configuration error"


@dataclass(frozen=True)
class EgressSettings:
    """What functions granted egress may reach, and how much (DONJON_EGRESS_*)."""

    #: Networks that are not globally routable but may be granted and dialled
    #: (DONJON_EGRESS_ALLOW_NETWORKS: CIDRs, comma or space separated); default none.
    #: The cloud metadata addresses stay refused inside them.
    allow_networks: tuple[IPNetwork, ...] = ()
    #: The DNS server the proxy asks (DONJON_EGRESS_DNS, ``IP[:PORT]``); None: the system's.
    dns: str | None = None
    #: Bytes one call may move through the proxy, both directions together
    #: (DONJON_EGRESS_MAX_BYTES).
    max_bytes_per_call: int = 64 * 1024 * 1024
    #: Connections one call may open through the proxy (DONJON_EGRESS_MAX_CONNECTIONS).
    max_connections_per_call: int = 32
    #: Seconds one connection may stay open (DONJON_EGRESS_MAX_CONNECTION_S); it never
    #: outlives its call either.
    max_connection_s: float = 60.0
    #: Connections open through the proxy on this node at once, all functions together
    #: (DONJON_EGRESS_NODE_CONNECTIONS); 0: an eighth of the open-file limit
    #: (egress/budget.py).
    max_connections_node: int = 0
    #: Of those, at most this many of one function (DONJON_EGRESS_FUNCTION_CONNECTIONS);
    #: 0: half of the node's.
    max_connections_per_function: int = 0


@dataclass(frozen=True)
class AdvisoryWatchSettings:
    """Re-checking deployed versions when the advisory data changes (docs/scanning.md)."""

    #: Seconds between looks at the advisory data's identity (DONJON_ADVISORY_WATCH_S).
    period_s: float = 60.0
    #: An OSV PyPI export zip fetched into DATA_DIR/advisories every `refresh_s`
    #: (DONJON_ADVISORY_SOURCE_URL, DONJON_ADVISORY_REFRESH_S); None: never fetched.
    source_url: str | None = None
    refresh_s: float = 86_400.0


@dataclass(frozen=True)
class MonitorSettings:
    """The monitor: detectors, responses, alert webhooks (DONJON_MONITOR_*, DONJON_ALERT_*)."""

    #: Detector name -> learn | alert | block (DONJON_MONITOR_MODES, `detector=mode,...`);
    #: a detector not named runs in `alert` mode.
    modes: Mapping[str, str] = field(default_factory=dict)
    #: Finding kind -> throttle | revoke | quarantine | none (DONJON_MONITOR_RESPONSES),
    #: what the responder does for an alert raised in `block` mode.
    responses: Mapping[str, str] = field(default_factory=dict)
    #: A throttle's rate, `count/second|minute|hour|day` (DONJON_MONITOR_THROTTLE), and
    #: how long it lasts in seconds (DONJON_MONITOR_THROTTLE_S).
    throttle: str = "10/minute"
    throttle_s: float = 3600.0
    #: Seconds the learned detectors learn before they raise (DONJON_MONITOR_LEARNING_S).
    learning_s: float = 86400.0
    #: One alert per finding kind and subject per this many seconds (DONJON_MONITOR_DEDUP_S).
    dedup_s: float = 300.0
    #: Seconds between the detectors' ticks, when windows close (DONJON_MONITOR_TICK_S).
    tick_s: float = 2.0
    #: Credential stuffing: failures from one source, or distinct keys failing, within the
    #: window (DONJON_MONITOR_AUTH_FAILURES, _AUTH_DISTINCT_KEYS, _AUTH_WINDOW_S).
    auth_failures: int = 20
    auth_distinct_keys: int = 10
    auth_window_s: float = 300.0
    #: https:// URLs each alert is POSTed to, signed (DONJON_ALERT_WEBHOOKS).
    webhooks: tuple[str, ...] = ()
    #: The Standard Webhooks secret, `whsec_<base64>` (DONJON_ALERT_WEBHOOK_SECRET).
    webhook_secret: Secret[str] | None = None
    #: CA certificates (PEM) the receivers' TLS is checked against, beside the
    #: system's (DONJON_ALERT_WEBHOOK_CA).
    webhook_ca: Path | None = None


@dataclass(frozen=True)
class AuditSettings:
    """Signed checkpoints (DONJON_AUDIT_CHECKPOINT_*), the outbox's drain (_OUTBOX_*)."""

    #: A checkpoint after this many new records (DONJON_AUDIT_CHECKPOINT_RECORDS) ...
    checkpoint_records: int = 1000
    #: ... or after this many seconds with new records (DONJON_AUDIT_CHECKPOINT_S);
    #: and always at start and at shutdown.
    checkpoint_s: float = 30.0
    #: Each checkpoint is also POSTed here as JSON, with retries
    #: (DONJON_AUDIT_CHECKPOINT_WEBHOOK: https://..., or http:// to a loopback address).
    checkpoint_webhook: str | None = None
    #: ... and sent to this syslog (DONJON_AUDIT_CHECKPOINT_SYSLOG: udp://HOST:PORT or
    #: unix:/PATH), RFC 5424.
    checkpoint_syslog: str | None = None
    #: The audit outbox's drain (audit/changes.py): records of admin changes whose append
    #: failed or was cut short are appended this often while the node serves
    #: (DONJON_AUDIT_OUTBOX_DRAIN_S) ...
    outbox_drain_s: float = 30.0
    #: ... and rows another node process (alive, or on another host) wrote or claimed
    #: only once they are this old (DONJON_AUDIT_OUTBOX_LEASE_S; shorter than a change
    #: plus 30 s of append retries: a record may be appended twice, never lost).
    outbox_lease_s: float = 300.0


@dataclass(frozen=True)
class Settings:
    """Where Donjon keeps its state and how clients reach it."""

    data_dir: Path
    url: str
    #: The CLI's credential (DONJON_API_KEY); masked in repr and str.
    api_key: Secret[str] | None
    debug: bool = False
    #: The deploy gate: block findings at or above both (DONJON_SCAN_FAIL_ON,
    #: DONJON_SCAN_MIN_CONFIDENCE).
    scan_fail_on: str = "high"
    scan_min_confidence: str = "medium"
    #: OSV records for dependency checks (DONJON_ADVISORIES: a directory or an
    #: export zip); default: DATA_DIR/advisories when it exists.
    advisories: Path | None = None
    advisory_watch: AdvisoryWatchSettings = AdvisoryWatchSettings()
    sandbox: SandboxSettings = SandboxSettings()
    #: Proxies whose X-Forwarded-For/-Proto the gateway believes
    #: (DONJON_TRUSTED_PROXIES: comma-separated CIDRs); default none.
    trusted_proxies: tuple[str, ...] = ()
    #: How the gateway bounds connections and request heads (DONJON_HEAD_TIMEOUT_S, ...).
    connections: ConnectionSettings = ConnectionSettings()
    #: Request bodies and results (DONJON_MAX_BODY_BYTES, DONJON_MAX_RESPONSE_BYTES).
    requests: RequestSettings = RequestSettings()
    #: Denials (401, 403, refused input) from one client are audited as one record
    #: at once and one aggregate per window (DONJON_AUDIT_DENIAL_WINDOW_S; 0: a
    #: record each), for at most this many clients at a time (the rest: one aggregate).
    audit_denial_window_s: float = 60.0
    audit_denial_max_sources: int = 10_000
    #: Quotas (ratelimit/quota_book.py) changed through another node apply here within
    #: this many seconds (DONJON_QUOTA_REFRESH_S).
    quota_refresh_s: float = 10.0
    #: Webhooks: a rotated secret's previous versions verify deliveries this long after
    #: the rotation (DONJON_WEBHOOK_SECRET_GRACE_S); a delivery id without a signed
    #: timestamp (GitHub's) is remembered this long (DONJON_WEBHOOK_REPLAY_TTL_S).
    webhook_secret_grace_s: float = 86_400.0
    webhook_replay_ttl_s: float = 7 * 86_400.0
    #: The master key file (DONJON_MASTER_KEY_FILE); None: master.key in the data dir.
    master_key_file: Path | None = None
    #: The vault's key provider program (DONJON_KMS_COMMAND, split like a shell's
    #: words, never run by one); empty: data keys are wrapped by a local key.
    kms_command: tuple[str, ...] = ()
    #: Seconds one key provider run may take (DONJON_KMS_TIMEOUT_S).
    kms_timeout_s: float = 10.0
    #: Invocation logs older than DONJON_LOG_RETENTION_DAYS are purged, and a function's
    #: oldest past DONJON_LOG_MAX_PER_FUNCTION entries trimmed (docs/limits.md).
    log_retention_days: int = 30
    log_max_per_function: int = 10_000
    #: Extra CA certificates (PEM) trusted when fetching issuers' JWKS (DONJON_JWKS_CA_FILE),
    #: and the age past which fetched keys are fetched again (DONJON_JWKS_MAX_AGE_S).
    jwks_ca_file: Path | None = None
    jwks_max_age_s: float = 300.0
    #: Seconds calls in flight get to finish once `donjon serve` is told to stop
    #: (SIGTERM, SIGINT); then they are cancelled and their sandboxes ended
    #: (DONJON_SHUTDOWN_GRACE_S).
    shutdown_grace_s: float = 10.0
    #: CA certificates (PEM) the CLI trusts for DONJON_URL (DONJON_CA_BUNDLE); None:
    #: the node's own certificate in the data dir for a local URL, else the system's.
    ca_bundle: Path | None = None
    #: The region the Lambda Invoke API's SigV4 credential scope must name
    #: (DONJON_LAMBDA_REGION; docs/lambda.md).
    lambda_region: str = "us-east-1"
    #: Controls `donjon serve` refuses to start without (DONJON_REQUIRE_CONTROLS: names
    #: as `donjon doctor` lists them), besides the baseline recorded at init.
    require_controls: tuple[str, ...] = ()
    #: The egress proxy: open networks, resolver, caps per call (DONJON_EGRESS_*).
    egress: EgressSettings = EgressSettings()
    #: The monitor: detectors' modes, responses, learning window, alert webhooks.
    monitor: MonitorSettings = MonitorSettings()
    #: The audit log's checkpoints: cadence and sinks (DONJON_AUDIT_CHECKPOINT_*).
    audit: AuditSettings = AuditSettings()
    #: Rate buckets and concurrency caps (DONJON_RATE_*, DONJON_*CONCURRENCY*).
    limits: LimitSettings = LimitSettings()
    #: The Redis that nodes share their limits, quotas and concurrency in
    #: (DONJON_REDIS_URL, redis://[:PASSWORD@]HOST:PORT/DB); None: in-process limits.
    #: Masked in repr; `redis_url_shown` is the form logs and `donjon doctor` print.
    redis_url: Secret[str] | None = None
    #: DONJON_DATABASE_URL: the node's database (database_url); None: the data dir's SQLite.
    database: Secret[str] | None = None
    #: The async queue's workers (DONJON_QUEUE_WORKERS, DONJON_QUEUE_LEASE_S, DONJON_QUEUE_POLL_S).
    queue: QueueSettings = QueueSettings()

    @property
    def advisories_path(self) -> Path | None:
        if self.advisories is not None:
            return self.advisories
        default = self.data_dir / "advisories"
        return default if default.is_dir() and any(default.iterdir()) else None

    @property
    def redis_url_shown(self) -> str:
        """DONJON_REDIS_URL with its password (and user) masked; "" when unset."""
        return "" if self.redis_url is None else masked_url(self.redis_url.reveal())

    @property
    def db_path(self) -> Path:
        return self.data_dir / DATA_DIR_DATABASE

    @property
    def database_url(self) -> str:
        """DONJON_DATABASE_URL (a password in it included), else the data dir's SQLite file."""
        return self.database.reveal() if self.database else f"sqlite:///{self.db_path}"

    @property
    def database_shown(self) -> str:
        """The database's URL with its password masked, for messages and `donjon doctor`."""
        return masked_url(self.database_url)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file the node keeps its state in; None on a database server."""
        return sqlite_file(self.database_url)

    @property
    def initialised(self) -> bool:
        """Whether `donjon init` ran here, as the files tell: the SQLite file, or (on a
        database server) the audit signing key init makes in the data dir."""
        path = self.sqlite_path
        return path.exists() if path is not None else self.audit_signing_key_path.exists()

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def audit_signing_key_path(self) -> Path:
        """The audit log's Ed25519 signing key (PKCS8 PEM, 0600), apart from the master key."""
        return self.data_dir / "audit-signing.key"

    @property
    def audit_signing_pub_path(self) -> Path:
        """Its verifier key string (`donjon audit pubkey`)."""
        return self.data_dir / "audit-signing.pub"

    @property
    def audit_checkpoints_path(self) -> Path:
        """The append-only file of signed checkpoints, outside the database."""
        return self.data_dir / "audit-checkpoints.jsonl"

    @property
    def audit_verified_path(self) -> Path:
        """Where `donjon audit verify` keeps the last checkpoint it verified (--incremental)."""
        return self.data_dir / "audit-verified.json"

    @property
    def vault_key_path(self) -> Path:
        """The vault's own key after a `donjon vault rekey`: beside the master key file."""
        return self.master_key_path.parent / "vault.key"

    @property
    def tls_cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def tls_key_path(self) -> Path:
        return self.data_dir / "tls" / "key.pem"

    @property
    def bundles_dir(self) -> Path:
        return self.data_dir / "bundles"

    @property
    def url_is_local(self) -> bool:
        """Does DONJON_URL name this host (loopback), whose node's files are in the data dir?"""
        host = urlsplit(self.url).hostname or ""
        return host == "localhost" or host.startswith("127.") or host == "::1"

    @property
    def client_ca(self) -> Path | None:
        """The CA file the CLI verifies the node with; None: the system's CAs.

        DONJON_CA_BUNDLE when set; for a local node, the certificate `donjon init`
        made in the data dir, found without being told.
        """
        if self.ca_bundle is not None:
            return self.ca_bundle
        if self.url_is_local and self.tls_cert_path.is_file():
            return self.tls_cert_path
        return None


def _default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "donjon"


def _path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``DONJON_*`` (from the environment or the given mapping, a `.env` and a
    config file; see donjon.config_sources) into `Settings`.

    Every malformed value is reported in one `ConfigError`, a line each.
    """
    # Imported here: the audit writer imports this module for its types, never reading.
    from donjon.config_sources import SettingsProblem, read_settings

    env = dict(os.environ) if environ is None else dict(environ)
    try:
        raw = read_settings(env)
    except SettingsProblem as e:
        count = len(e.problems)
        head = "a setting is malformed" if count == 1 else f"{count} settings are malformed"
        raise ConfigError(
            f"{head}:\n  " + "\n  ".join(e.problems),
            hint="fix or unset each one (README, 'Configuration'); unset means the default",
        ) from None
    data_dir = _path(raw.DATA_DIR) or _default_data_dir(env)
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir
    sandbox_dir = _path(raw.SANDBOX_DIR)
    if raw.ALERT_WEBHOOKS and raw.ALERT_WEBHOOK_SECRET is None:
        raise ConfigError(
            "DONJON_ALERT_WEBHOOKS is set without DONJON_ALERT_WEBHOOK_SECRET",
            hint="set DONJON_ALERT_WEBHOOK_SECRET=whsec_<base64 of 32 random bytes>: "
            "receivers check each alert's signature with it",
        )
    if raw.ADVISORY_SOURCE_URL and raw.ADVISORIES:
        raise ConfigError(
            "DONJON_ADVISORY_SOURCE_URL is set with DONJON_ADVISORIES",
            hint="the export is fetched into DATA_DIR/advisories, which the node reads only "
            "when DONJON_ADVISORIES is unset: unset one of them",
        )
    if raw.MAX_LOOP_LAG_S and raw.LAG_TARGET_MS >= raw.MAX_LOOP_LAG_S * 1000:
        raise ConfigError(
            f"DONJON_LAG_TARGET_MS ({raw.LAG_TARGET_MS:g}) is not below "
            f"DONJON_MAX_LOOP_LAG_S ({raw.MAX_LOOP_LAG_S:g} s)",
            hint="the lag a share of calls is shed to keep must be below the lag at which "
            "every call is shed: lower DONJON_LAG_TARGET_MS or raise DONJON_MAX_LOOP_LAG_S",
        )
    return Settings(
        data_dir=data_dir,
        url=raw.URL or f"https://127.0.0.1:{DEFAULT_PORT}",
        api_key=Secret(raw.API_KEY.get_secret_value()) if raw.API_KEY else None,
        debug=raw.DEBUG,
        scan_fail_on=raw.SCAN_FAIL_ON,
        scan_min_confidence=raw.SCAN_MIN_CONFIDENCE,
        advisories=_path(raw.ADVISORIES),
        advisory_watch=AdvisoryWatchSettings(
            raw.ADVISORY_WATCH_S, raw.ADVISORY_SOURCE_URL, raw.ADVISORY_REFRESH_S
        ),
        sandbox=SandboxSettings(
            uid=raw.SANDBOX_UID,
            gid=raw.SANDBOX_GID,
            id_range=raw.SANDBOX_UID_RANGE or DEFAULT_SANDBOX_ID_RANGE,
            staging_dir=sandbox_dir or SandboxSettings.staging_dir,
            python=_path(raw.SANDBOX_PYTHON),
            memory_budget_mb=raw.SANDBOX_MEMORY_BUDGET_MB,
            pids_budget=raw.SANDBOX_PIDS_BUDGET,
            idle_s=raw.SANDBOX_IDLE_S,
            max_queued_per_function=raw.MAX_QUEUED_PER_FUNCTION,
            max_queued=raw.MAX_QUEUED,
            max_queue_wait_s=raw.MAX_QUEUE_WAIT_S,
            shed_target_s=raw.SHED_TARGET_MS / 1000,
            shed_interval_s=raw.SHED_INTERVAL_MS / 1000,
        ),
        trusted_proxies=raw.TRUSTED_PROXIES,
        connections=ConnectionSettings(
            handshake_timeout_s=raw.TLS_HANDSHAKE_TIMEOUT_S,
            head_timeout_s=raw.HEAD_TIMEOUT_S,
            body_timeout_s=raw.BODY_TIMEOUT_S,
            keepalive_timeout_s=raw.KEEPALIVE_TIMEOUT_S,
            max_head_bytes=raw.MAX_HEAD_BYTES,
            max_headers=raw.MAX_HEADERS,
            max_connections_per_client=raw.MAX_CONNECTIONS_PER_CLIENT,
            max_connections=raw.MAX_CONNECTIONS,
            max_in_flight=raw.MAX_IN_FLIGHT,
            max_loop_lag_s=raw.MAX_LOOP_LAG_S,
            lag_target_s=raw.LAG_TARGET_MS / 1000,
            lag_interval_s=raw.LAG_INTERVAL_MS / 1000,
            body_deadline_s=raw.BODY_DEADLINE_S,
            refusal_hold_s=raw.REFUSAL_HOLD_S,
            connect_rate=raw.CONNECT_RATE,
            connect_burst=raw.CONNECT_BURST,
        ),
        requests=RequestSettings(
            max_body_bytes=raw.MAX_BODY_BYTES,
            max_response_bytes=raw.MAX_RESPONSE_BYTES,
        ),
        audit_denial_window_s=raw.AUDIT_DENIAL_WINDOW_S,
        audit_denial_max_sources=raw.AUDIT_DENIAL_MAX_SOURCES,
        quota_refresh_s=raw.QUOTA_REFRESH_S,
        webhook_secret_grace_s=raw.WEBHOOK_SECRET_GRACE_S,
        webhook_replay_ttl_s=raw.WEBHOOK_REPLAY_TTL_S,
        master_key_file=_path(raw.MASTER_KEY_FILE),
        kms_command=raw.KMS_COMMAND,
        kms_timeout_s=raw.KMS_TIMEOUT_S,
        log_retention_days=raw.LOG_RETENTION_DAYS,
        log_max_per_function=raw.LOG_MAX_PER_FUNCTION,
        jwks_ca_file=_path(raw.JWKS_CA_FILE),
        jwks_max_age_s=raw.JWKS_MAX_AGE_S,
        shutdown_grace_s=raw.SHUTDOWN_GRACE_S,
        ca_bundle=_path(raw.CA_BUNDLE),
        lambda_region=raw.LAMBDA_REGION,
        require_controls=raw.REQUIRE_CONTROLS,
        egress=EgressSettings(
            allow_networks=tuple(ipaddress.ip_network(n) for n in raw.EGRESS_ALLOW_NETWORKS),
            dns=raw.EGRESS_DNS,
            max_bytes_per_call=raw.EGRESS_MAX_BYTES,
            max_connections_per_call=raw.EGRESS_MAX_CONNECTIONS,
            max_connection_s=raw.EGRESS_MAX_CONNECTION_S,
            max_connections_node=raw.EGRESS_NODE_CONNECTIONS,
            max_connections_per_function=raw.EGRESS_FUNCTION_CONNECTIONS,
        ),
        monitor=MonitorSettings(
            modes=dict(raw.MONITOR_MODES),
            responses=dict(raw.MONITOR_RESPONSES),
            throttle=raw.MONITOR_THROTTLE,
            throttle_s=raw.MONITOR_THROTTLE_S,
            learning_s=raw.MONITOR_LEARNING_S,
            dedup_s=raw.MONITOR_DEDUP_S,
            tick_s=raw.MONITOR_TICK_S,
            auth_failures=raw.MONITOR_AUTH_FAILURES,
            auth_distinct_keys=raw.MONITOR_AUTH_DISTINCT_KEYS,
            auth_window_s=raw.MONITOR_AUTH_WINDOW_S,
            webhooks=raw.ALERT_WEBHOOKS,
            webhook_secret=(
                Secret(raw.ALERT_WEBHOOK_SECRET.get_secret_value())
                if raw.ALERT_WEBHOOK_SECRET
                else None
            ),
            webhook_ca=_path(raw.ALERT_WEBHOOK_CA),
        ),
        audit=AuditSettings(
            checkpoint_records=raw.AUDIT_CHECKPOINT_RECORDS,
            checkpoint_s=raw.AUDIT_CHECKPOINT_S,
            checkpoint_webhook=raw.AUDIT_CHECKPOINT_WEBHOOK,
            checkpoint_syslog=raw.AUDIT_CHECKPOINT_SYSLOG,
            outbox_drain_s=raw.AUDIT_OUTBOX_DRAIN_S,
            outbox_lease_s=raw.AUDIT_OUTBOX_LEASE_S,
        ),
        limits=limit_settings(raw),
        redis_url=Secret(raw.REDIS_URL.get_secret_value()) if raw.REDIS_URL else None,
        database=Secret(raw.DATABASE_URL.get_secret_value()) if raw.DATABASE_URL else None,
        queue=queue_settings(raw),
    )
