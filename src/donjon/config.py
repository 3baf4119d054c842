"""Settings: the only module that reads the environment.

Everything else receives a `Settings` value.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from donjon.errors import Error
from donjon.secret import Secret

__all__ = ["ConfigError", "ConnectionSettings", "SandboxSettings", "Settings", "load_settings"]

DEFAULT_PORT = 8443


class ConfigError(Error):
    """A setting is missing or malformed."""

    title = "Configuration error"


@dataclass(frozen=True)
class ConnectionSettings:
    """Limits on client connections and request heads (docs/security.md)."""

    #: Seconds for a connection's TLS handshake (DONJON_TLS_HANDSHAKE_TIMEOUT_S).
    handshake_timeout_s: float = 10.0
    #: Seconds for a whole request head, from its first byte or from connecting
    #: (DONJON_HEAD_TIMEOUT_S).
    head_timeout_s: float = 10.0
    #: Seconds a request body may go without progress (DONJON_BODY_TIMEOUT_S).
    body_timeout_s: float = 30.0
    #: Seconds an idle keep-alive connection stays open (DONJON_KEEPALIVE_TIMEOUT_S).
    keepalive_timeout_s: int = 5
    #: Bytes of request line and headers (DONJON_MAX_HEAD_BYTES).
    max_head_bytes: int = 64 * 1024
    #: Header fields per request (DONJON_MAX_HEADERS).
    max_headers: int = 100
    #: Open connections per client address (DONJON_MAX_CONNECTIONS_PER_CLIENT).
    max_connections_per_client: int = 64
    #: Open connections in all (DONJON_MAX_CONNECTIONS); 0: half the open-file limit.
    max_connections: int = 0
    #: Requests (head complete) being served at once (DONJON_MAX_IN_FLIGHT).
    max_in_flight: int = 1024


#: Host uids (and gids) for sandboxes: one per function, from a range no account uses.
DEFAULT_SANDBOX_ID_RANGE = (100_000, 165_535)


@dataclass(frozen=True)
class SandboxSettings:
    """Who sandboxes run as on the host, and what they are given (DONJON_SANDBOX_*)."""

    #: One host uid/gid for every sandbox (DONJON_SANDBOX_UID/GID); None: one per
    #: function from `id_range` (DONJON_SANDBOX_UID_RANGE, `first-last`).
    uid: int | None = None
    gid: int | None = None
    id_range: tuple[int, int] = DEFAULT_SANDBOX_ID_RANGE
    #: Where bundles and the runtime are staged for the sandbox user (DONJON_SANDBOX_DIR).
    staging_dir: Path = Path("/var/lib/donjon/sandbox")
    #: The interpreter sandboxes run (DONJON_SANDBOX_PYTHON); None: found at start.
    python: Path | None = None


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
    sandbox: SandboxSettings = SandboxSettings()
    #: Proxies whose X-Forwarded-For/-Proto the gateway believes
    #: (DONJON_TRUSTED_PROXIES: comma-separated CIDRs); default none.
    trusted_proxies: tuple[str, ...] = ()
    #: How the gateway bounds connections and request heads (DONJON_HEAD_TIMEOUT_S, ...).
    connections: ConnectionSettings = ConnectionSettings()
    #: Denials (401, 403, refused input) from one client are audited as one record
    #: at once and one aggregate per window (DONJON_AUDIT_DENIAL_WINDOW_S; 0: a
    #: record each), for at most this many clients at a time (the rest: one aggregate).
    audit_denial_window_s: float = 60.0
    audit_denial_max_sources: int = 10_000
    #: The master key file (DONJON_MASTER_KEY_FILE); None: master.key in the data dir.
    master_key_file: Path | None = None
    #: The vault's key provider program (DONJON_KMS_COMMAND, split like a shell's
    #: words, never run by one); empty: data keys are wrapped by a local key.
    kms_command: tuple[str, ...] = ()
    #: Seconds one key provider run may take (DONJON_KMS_TIMEOUT_S).
    kms_timeout_s: float = 10.0
    #: DONJON_LOG_RETENTION_DAYS: invocation logs older than this are purged.
    log_retention_days: int = 30
    #: Extra CA certificates (PEM) trusted when fetching issuers' JWKS over HTTPS
    #: (DONJON_JWKS_CA_FILE), beside the system's; default none.
    jwks_ca_file: Path | None = None
    #: Seconds calls in flight get to finish once `donjon serve` is told to stop
    #: (SIGTERM, SIGINT); then they are cancelled and their sandboxes ended
    #: (DONJON_SHUTDOWN_GRACE_S).
    shutdown_grace_s: float = 10.0

    @property
    def advisories_path(self) -> Path | None:
        if self.advisories is not None:
            return self.advisories
        default = self.data_dir / "advisories"
        return default if default.is_dir() and any(default.iterdir()) else None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "donjon.db"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

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


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "donjon"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read ``DONJON_*`` variables (or the given mapping) into `Settings`."""
    env = dict(os.environ) if environ is None else environ
    raw_dir = env.get("DONJON_DATA_DIR")
    data_dir = Path(raw_dir).expanduser() if raw_dir else _default_data_dir()
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir
    url = env.get("DONJON_URL", f"https://127.0.0.1:{DEFAULT_PORT}").rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(
            f"DONJON_URL must start with https:// (got {url!r})",
            hint="set DONJON_URL=https://HOST:PORT",
        )
    advisories = env.get("DONJON_ADVISORIES")
    window = _number(env, "DONJON_AUDIT_DENIAL_WINDOW_S", 60.0, integer=False, minimum=0)
    sources = _number(env, "DONJON_AUDIT_DENIAL_MAX_SOURCES", 10_000, integer=True, minimum=1)
    return Settings(
        data_dir=data_dir,
        url=url,
        api_key=Secret(env["DONJON_API_KEY"]) if env.get("DONJON_API_KEY") else None,
        debug=_flag(env, "DONJON_DEBUG"),
        scan_fail_on=_choice(
            env, "DONJON_SCAN_FAIL_ON", "high", ("low", "medium", "high", "critical")
        ),
        scan_min_confidence=_choice(
            env, "DONJON_SCAN_MIN_CONFIDENCE", "medium", ("low", "medium", "high")
        ),
        advisories=_existing_path(env, "DONJON_ADVISORIES") if advisories else None,
        sandbox=_sandbox_settings(env),
        trusted_proxies=_networks(env, "DONJON_TRUSTED_PROXIES"),
        connections=_connection_settings(env),
        audit_denial_window_s=window,
        audit_denial_max_sources=int(sources),
        master_key_file=_key_file(env),
        kms_command=_kms_command(env),
        kms_timeout_s=_number(env, "DONJON_KMS_TIMEOUT_S", 10.0, integer=False, minimum=0.1),
        log_retention_days=int(
            _number(env, "DONJON_LOG_RETENTION_DAYS", 30, integer=True, minimum=1)
        ),
        shutdown_grace_s=_number(
            env, "DONJON_SHUTDOWN_GRACE_S", 10.0, integer=False, minimum=0
        ),
        jwks_ca_file=(
            _existing_path(env, "DONJON_JWKS_CA_FILE", "a PEM file of CA certificates")
            if env.get("DONJON_JWKS_CA_FILE")
            else None
        ),
    )


def _key_file(env: dict[str, str]) -> Path | None:
    raw = env.get("DONJON_MASTER_KEY_FILE", "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"DONJON_MASTER_KEY_FILE must be an absolute path (got {raw!r})",
            hint="give the full path of the 0600 key file",
        )
    return path


def _kms_command(env: dict[str, str]) -> tuple[str, ...]:
    raw = env.get("DONJON_KMS_COMMAND", "").strip()
    if not raw:
        return ()
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as e:
        raise ConfigError(
            f"DONJON_KMS_COMMAND is not a command line ({e})",
            hint="give the program and its arguments, quoted like a shell's words",
        ) from e
    return argv


def _host_id(env: dict[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) == 0 or int(raw) >= 2**32 - 1:
        raise ConfigError(
            f"{name} must be a host id other than 0 (got {raw!r}): sandboxes "
            "never run as host root",
            hint=f"unset {name}, or give an unused id",
        )
    return int(raw)


def _id_range(env: dict[str, str], name: str) -> tuple[int, int]:
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_SANDBOX_ID_RANGE
    first, sep, last = raw.partition("-")
    if not (sep and first.isdigit() and last.isdigit()):
        lo, hi = 0, -1
    else:
        lo, hi = int(first), int(last)
    if lo < 1000 or hi - lo + 1 < 1024 or hi >= 2**32 - 1:
        raise ConfigError(
            f"{name} {raw!r} is not a range like 100000-165535",
            hint="give first-last, both above 999, with at least 1024 ids, used by no account",
        )
    return lo, hi


def _sandbox_settings(env: dict[str, str]) -> SandboxSettings:
    uid = _host_id(env, "DONJON_SANDBOX_UID")
    gid = _host_id(env, "DONJON_SANDBOX_GID")
    staging = env.get("DONJON_SANDBOX_DIR", "").strip()
    python = env.get("DONJON_SANDBOX_PYTHON", "").strip()
    return SandboxSettings(
        uid=uid,
        gid=gid,
        id_range=_id_range(env, "DONJON_SANDBOX_UID_RANGE"),
        staging_dir=Path(staging) if staging else SandboxSettings.staging_dir,
        python=Path(python) if python else None,
    )


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(
        f"{name} must be true or false (got {env[name]!r})",
        hint=f"unset {name}, or set it to 1 or 0",
    )


def _existing_path(
    env: dict[str, str], name: str, what: str = "an OSV directory or export zip"
) -> Path:
    path = Path(env[name]).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{name} names {path}, which does not exist",
            hint=f"point {name} at {what}, or unset it",
        )
    return path


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(
            f"{name} must be one of {', '.join(choices)} (got {env[name]!r})",
            hint=f"unset {name} for the default ({default})",
        )
    return value


def _networks(env: dict[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128), normalised."""
    out = []
    for item in env.get(name, "").split(","):
        if not item.strip():
            continue
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=True)))
        except ValueError as e:
            raise ConfigError(
                f"{name}: {item.strip()!r} is not a network ({e})",
                hint=f"set {name} to CIDRs such as 10.0.0.0/8,192.0.2.7/32",
            ) from e
    return tuple(out)


def _number(
    env: dict[str, str], name: str, default: float, *, integer: bool, minimum: float
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or math.isinf(value) or value < minimum:
        kind = "a whole number" if integer else "a number of seconds"
        raise ConfigError(
            f"{name} must be {kind}, at least {minimum:g} (got {raw!r})",
            hint=f"unset {name} for the default ({default:g})",
        )
    return value


def _connection_settings(env: dict[str, str]) -> ConnectionSettings:
    d = ConnectionSettings()

    def seconds(name: str, default: float) -> float:
        return _number(env, name, default, integer=False, minimum=0.1)

    def count(name: str, default: int, minimum: int = 1) -> int:
        return int(_number(env, name, default, integer=True, minimum=minimum))

    return ConnectionSettings(
        handshake_timeout_s=seconds("DONJON_TLS_HANDSHAKE_TIMEOUT_S", d.handshake_timeout_s),
        head_timeout_s=seconds("DONJON_HEAD_TIMEOUT_S", d.head_timeout_s),
        body_timeout_s=seconds("DONJON_BODY_TIMEOUT_S", d.body_timeout_s),
        keepalive_timeout_s=count("DONJON_KEEPALIVE_TIMEOUT_S", d.keepalive_timeout_s),
        max_head_bytes=count("DONJON_MAX_HEAD_BYTES", d.max_head_bytes, 1024),
        max_headers=count("DONJON_MAX_HEADERS", d.max_headers, 8),
        max_connections_per_client=count(
            "DONJON_MAX_CONNECTIONS_PER_CLIENT", d.max_connections_per_client
        ),
        max_connections=count("DONJON_MAX_CONNECTIONS", d.max_connections, 0),
        max_in_flight=count("DONJON_MAX_IN_FLIGHT", d.max_in_flight),
    )
