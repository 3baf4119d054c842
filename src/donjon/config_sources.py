"""Where settings come from: `DONJON_*` variables, an optional `.env` file and a TOML file.

pydantic-settings reads and validates them (`SettingsInput`); `donjon.config`
turns the result into the `Settings` value the rest of Donjon receives. In
order of precedence: the environment, then the file `DONJON_ENV_FILE` names (a
`.env` of `DONJON_*=...` lines), then the TOML file `DONJON_CONFIG_FILE` names
(default `$XDG_CONFIG_HOME/donjon/config.toml`, keys without the prefix, in
lower case: `url = "https://..."`, `max_in_flight = 512`), then the defaults.

A `.env` is read only when named: one found in the working directory (a
cloned repository's, say) could point `DONJON_URL` elsewhere and collect the
API key the CLI sends. A file that others may write is refused for the same
reason. Every malformed value is reported at once, each by its variable.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from donjon.config_urls import database_url, redis_url
from donjon.config_validators import (
    absolute,
    advisory_source_url,
    api_key,
    blank_is_unset,
    checkpoint_syslog,
    checkpoint_webhook,
    command,
    dns_server,
    egress_networks,
    existing,
    https_urls,
    id_range,
    lower,
    monitor_modes,
    monitor_responses,
    names,
    networks,
    url,
    webhook_secret,
)

__all__ = ["PREFIX", "SettingsInput", "SettingsProblem", "read_settings"]

PREFIX = "DONJON_"


class SettingsProblem(Exception):
    """The sources could not be read, or values are malformed: one line each in `problems`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


Text = Annotated[str | None, BeforeValidator(blank_is_unset)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]
ExistingPath = Annotated[str | None, BeforeValidator(existing), BeforeValidator(blank_is_unset)]
HostId = Annotated[
    int | None, Field(gt=0, lt=2**32 - 1, description="a host id; never 0 (host root)")
]


class SettingsInput(BaseSettings):
    """Every `DONJON_*` setting as read, typed and bounded; None: not set (a default applies)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    DATA_DIR: Text = None
    URL: Annotated[str | None, BeforeValidator(url), BeforeValidator(blank_is_unset)] = None
    API_KEY: Annotated[
        SecretStr | None, BeforeValidator(api_key), BeforeValidator(blank_is_unset)
    ] = None
    DEBUG: Annotated[bool, BeforeValidator(lower)] = False
    SCAN_FAIL_ON: Annotated[
        Literal["low", "medium", "high", "critical"], BeforeValidator(lower)
    ] = "high"
    SCAN_MIN_CONFIDENCE: Annotated[Literal["low", "medium", "high"], BeforeValidator(lower)] = (
        "medium"
    )
    ADVISORIES: ExistingPath = None
    #: The advisory watch (lifecycle/advisory_watch.py): how often the advisory data is
    #: looked at for a change, the OSV export it fetches (unset: none), and how often.
    ADVISORY_WATCH_S: Annotated[Seconds, Field(ge=1, le=86_400)] = 60.0
    ADVISORY_SOURCE_URL: Annotated[
        str | None, BeforeValidator(advisory_source_url), BeforeValidator(blank_is_unset)
    ] = None
    ADVISORY_REFRESH_S: Annotated[Seconds, Field(ge=60, le=30 * 86_400)] = 86_400.0
    SANDBOX_UID: HostId = None
    SANDBOX_GID: HostId = None
    SANDBOX_UID_RANGE: Annotated[
        tuple[int, int] | None,
        NoDecode,
        BeforeValidator(id_range),
        BeforeValidator(blank_is_unset),
    ] = None
    SANDBOX_DIR: Text = None
    SANDBOX_PYTHON: Text = None
    #: The node-wide ceilings over all of a node's sandboxes (sandbox/budget.py); unset: auto.
    SANDBOX_MEMORY_BUDGET_MB: Annotated[int | None, Field(ge=64)] = None
    SANDBOX_PIDS_BUDGET: Annotated[int | None, Field(ge=32)] = None
    #: Controls `donjon serve` must find in force (controls/), besides its recorded baseline.
    REQUIRE_CONTROLS: Annotated[tuple[str, ...], NoDecode, BeforeValidator(names)] = ()
    TRUSTED_PROXIES: Annotated[tuple[str, ...], NoDecode, BeforeValidator(networks)] = ()
    TLS_HANDSHAKE_TIMEOUT_S: Annotated[Seconds, Field(ge=0.1)] = 10.0
    HEAD_TIMEOUT_S: Annotated[Seconds, Field(ge=0.1)] = 10.0
    BODY_TIMEOUT_S: Annotated[Seconds, Field(ge=0.1)] = 30.0
    KEEPALIVE_TIMEOUT_S: Annotated[int, Field(ge=1)] = 5
    MAX_HEAD_BYTES: Annotated[int, Field(ge=1024)] = 64 * 1024
    MAX_HEADERS: Annotated[int, Field(ge=8)] = 100
    MAX_CONNECTIONS_PER_CLIENT: Annotated[int, Field(ge=1)] = 64
    MAX_CONNECTIONS: Annotated[int, Field(ge=0)] = 0
    MAX_IN_FLIGHT: Annotated[int, Field(ge=1)] = 1024
    MAX_LOOP_LAG_S: Annotated[Seconds, Field(ge=0, le=60)] = 0.25
    #: The loop's lag a share of the calls is shed to keep (gateway/lag_shed.py, PIE),
    #: and how often the share is updated; no 0 (DONJON_MAX_LOOP_LAG_S=0 turns it off).
    LAG_TARGET_MS: Annotated[float, Field(ge=1, le=60_000, allow_inf_nan=False)] = 10.0
    LAG_INTERVAL_MS: Annotated[float, Field(ge=1, le=1_000, allow_inf_nan=False)] = 15.0
    #: A refused client's connection rests (gateway/connections.py): its next request
    #: is read only after this many seconds, at most the Retry-After it was given.
    REFUSAL_HOLD_S: Annotated[Seconds, Field(ge=0, le=60)] = 1.0
    #: New connections per client address, checked at accept (gateway/accept_gate.py):
    #: a second, and at once. No 0 (off): a trusted proxy is exempt instead.
    CONNECT_RATE: Annotated[float, Field(ge=1, le=1_000_000, allow_inf_nan=False)] = 100.0
    CONNECT_BURST: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    #: Request bodies and responses (gateway/bodies.py): the most any function's
    #: `limits.body` may ask, the whole-body deadline, and the largest result returned.
    MAX_BODY_BYTES: Annotated[int, Field(ge=1024, le=32 * 1024 * 1024)] = 6 * 1024 * 1024
    BODY_DEADLINE_S: Annotated[Seconds, Field(ge=0.1, le=3600)] = 60.0
    MAX_RESPONSE_BYTES: Annotated[int, Field(ge=1024, le=6 * 1024 * 1024)] = 6 * 1024 * 1024
    #: Calls waiting for a function's free slot, per function and node-wide, and the
    #: longest one may wait (sandbox/backlog.py); past them a call is shed with 503.
    MAX_QUEUED_PER_FUNCTION: Annotated[int, Field(ge=0, le=100_000)] = 64
    MAX_QUEUED: Annotated[int, Field(ge=0, le=1_000_000)] = 512
    MAX_QUEUE_WAIT_S: Annotated[Seconds, Field(gt=0, le=3600)] = 5.0
    #: A standing or overflowing queue (sandbox/standing.py): the wait its calls may have,
    #: and how long every call must wait past it for the queue to stand; 0: from the
    #: service time.
    SHED_TARGET_MS: Annotated[float, Field(ge=0, le=3_600_000, allow_inf_nan=False)] = 0.0
    SHED_INTERVAL_MS: Annotated[float, Field(ge=0, le=3_600_000, allow_inf_nan=False)] = 0.0
    #: Issue 15 limits (docs/limits.md, "Rate limits" and "Concurrency"): each caller's
    #: token bucket unless its key or role sets one, each client address's on `auth:
    #: public` triggers, the share of a function's rate one caller may take, calls in
    #: flight per caller and on the node (their wait: MAX_QUEUE_WAIT_S).
    RATE_PER_PRINCIPAL: Annotated[
        str, Field(pattern=r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$")
    ] = "1000/second"
    BURST_PER_PRINCIPAL: Annotated[int | None, Field(ge=1, le=1_000_000_000)] = None
    RATE_PER_CLIENT: Annotated[
        str, Field(pattern=r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$")
    ] = "100/second"
    BURST_PER_CLIENT: Annotated[int | None, Field(ge=1, le=1_000_000_000)] = None
    PRINCIPAL_SHARE: Annotated[float, Field(gt=0, le=1)] = 0.5
    CONCURRENCY_PER_PRINCIPAL: Annotated[int, Field(ge=1, le=100_000)] = 64
    MAX_CONCURRENCY: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    #: Each principal's bucket for the admin API (gateway/admin_rate.py).
    ADMIN_RATE_PER_PRINCIPAL: Annotated[
        str, Field(pattern=r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$")
    ] = "100/second"
    ADMIN_BURST_PER_PRINCIPAL: Annotated[int, Field(ge=1, le=1_000_000_000)] = 1000
    #: Seconds a sandbox may stay idle before it is stopped (sandbox/pool.py).
    SANDBOX_IDLE_S: Annotated[Seconds, Field(gt=0, le=86_400)] = 300.0
    AUDIT_DENIAL_WINDOW_S: Annotated[Seconds, Field(ge=0)] = 60.0
    AUDIT_DENIAL_MAX_SOURCES: Annotated[int, Field(ge=1)] = 10_000
    #: Seconds between reads of the quotas in force (ratelimit/quota_book.py).
    QUOTA_REFRESH_S: Annotated[Seconds, Field(gt=0, le=3600)] = 10.0
    #: Webhooks (triggers/webhooks/): how long a rotated secret's previous versions still
    #: verify deliveries, and how long a delivery id is remembered for schemes that sign
    #: no timestamp (GitHub's).
    WEBHOOK_SECRET_GRACE_S: Annotated[Seconds, Field(ge=0, le=30 * 86_400)] = 86_400.0
    WEBHOOK_REPLAY_TTL_S: Annotated[Seconds, Field(ge=600, le=365 * 86_400)] = 7 * 86_400.0
    #: Signed checkpoints of the audit log (audit/checkpoints.py): every so many records
    #: or seconds, and where else they go besides the database and the checkpoint file.
    AUDIT_CHECKPOINT_RECORDS: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    AUDIT_CHECKPOINT_S: Annotated[Seconds, Field(ge=0.1, le=86_400)] = 30.0
    AUDIT_CHECKPOINT_WEBHOOK: Annotated[
        str | None, BeforeValidator(checkpoint_webhook), BeforeValidator(blank_is_unset)
    ] = None
    AUDIT_CHECKPOINT_SYSLOG: Annotated[
        str | None, BeforeValidator(checkpoint_syslog), BeforeValidator(blank_is_unset)
    ] = None
    #: The audit outbox's drain (audit/changes.py): its cadence, and how old another
    #: node's row must be before it is taken.
    AUDIT_OUTBOX_DRAIN_S: Annotated[Seconds, Field(ge=0.1, le=3600)] = 30.0
    AUDIT_OUTBOX_LEASE_S: Annotated[Seconds, Field(ge=1, le=86_400)] = 300.0
    MASTER_KEY_FILE: Annotated[
        str | None, BeforeValidator(absolute), BeforeValidator(blank_is_unset)
    ] = None
    KMS_COMMAND: Annotated[tuple[str, ...], NoDecode, BeforeValidator(command)] = ()
    KMS_TIMEOUT_S: Annotated[Seconds, Field(ge=0.1)] = 10.0
    LOG_RETENTION_DAYS: Annotated[int, Field(ge=1)] = 30
    LOG_MAX_PER_FUNCTION: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    MAX_FUNCTIONS_PER_OWNER: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    KEEP_BUNDLES: Annotated[int, Field(ge=1, le=1000)] = 5
    JWKS_CA_FILE: ExistingPath = None
    JWKS_MAX_AGE_S: Annotated[Seconds, Field(ge=1, le=86_400)] = 300.0
    SHUTDOWN_GRACE_S: Annotated[Seconds, Field(ge=0)] = 10.0
    #: The async queue (triggers/queue/): deliveries run at once by this node, the lease
    #: a delivery holds (renewed while it runs; a dead node's expires after it), and how
    #: often idle workers look for due invocations (an enqueue on this node wakes them).
    QUEUE_WORKERS: Annotated[int, Field(ge=1, le=256)] = 4
    QUEUE_LEASE_S: Annotated[Seconds, Field(ge=1, le=3600)] = 60.0
    QUEUE_POLL_S: Annotated[Seconds, Field(gt=0, le=60)] = 1.0
    #: Dead-lettered invocations a function keeps before its enqueues are refused.
    QUEUE_MAX_DEAD: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    #: Succeeded invocations a function keeps (its newest; the oldest are forgotten).
    QUEUE_KEEP_SUCCEEDED: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    #: Pending invocations the node holds, every function's together (node_bound.py).
    QUEUE_MAX_PENDING: Annotated[int, Field(ge=1, le=100_000_000)] = 100_000
    CA_BUNDLE: ExistingPath = None
    #: A region name such as us-east-1 (the Lambda Invoke API's SigV4 scope).
    LAMBDA_REGION: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")] = (
        "us-east-1"
    )
    EGRESS_ALLOW_NETWORKS: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(egress_networks)
    ] = ()
    EGRESS_DNS: Annotated[
        str | None, BeforeValidator(dns_server), BeforeValidator(blank_is_unset)
    ] = None
    EGRESS_MAX_BYTES: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    EGRESS_MAX_CONNECTIONS: Annotated[int, Field(ge=1)] = 32
    EGRESS_MAX_CONNECTION_S: Annotated[Seconds, Field(ge=0.1)] = 60.0
    EGRESS_NODE_CONNECTIONS: Annotated[int, Field(ge=0)] = 0
    EGRESS_FUNCTION_CONNECTIONS: Annotated[int, Field(ge=0)] = 0
    #: The monitor (monitor/): detector modes, responses, learning, dedup, rules' thresholds.
    MONITOR_MODES: Annotated[
        tuple[tuple[str, str], ...], NoDecode, BeforeValidator(monitor_modes)
    ] = ()
    MONITOR_RESPONSES: Annotated[
        tuple[tuple[str, str], ...], NoDecode, BeforeValidator(monitor_responses)
    ] = ()
    #: A throttle's rate and length (monitor/throttles.py, owned by the responses).
    MONITOR_THROTTLE: Annotated[
        str, Field(pattern=r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$")
    ] = "10/minute"
    MONITOR_THROTTLE_S: Annotated[Seconds, Field(ge=1, le=30 * 86400)] = 3600.0
    MONITOR_LEARNING_S: Annotated[Seconds, Field(ge=0)] = 86400.0
    MONITOR_DEDUP_S: Annotated[Seconds, Field(ge=0)] = 300.0
    MONITOR_TICK_S: Annotated[Seconds, Field(ge=0.05, le=60)] = 2.0
    MONITOR_AUTH_FAILURES: Annotated[int, Field(ge=1)] = 20
    MONITOR_AUTH_DISTINCT_KEYS: Annotated[int, Field(ge=1)] = 10
    MONITOR_AUTH_WINDOW_S: Annotated[Seconds, Field(ge=1)] = 300.0
    #: Alert webhooks (monitor/webhooks.py): where, the signing secret, the receivers' CA.
    ALERT_WEBHOOKS: Annotated[tuple[str, ...], NoDecode, BeforeValidator(https_urls)] = ()
    ALERT_WEBHOOK_SECRET: Annotated[
        SecretStr | None, BeforeValidator(webhook_secret), BeforeValidator(blank_is_unset)
    ] = None
    ALERT_WEBHOOK_CA: ExistingPath = None
    #: The Redis that shares limits, quotas and concurrency between nodes (ratelimit/redis.py);
    #: unset: each node's own memory. Its password is never shown.
    REDIS_URL: Annotated[
        SecretStr | None, BeforeValidator(redis_url), BeforeValidator(blank_is_unset)
    ] = None
    #: The node's database (config_urls.py); unset: the SQLite file in the data dir.
    DATABASE_URL: Annotated[
        SecretStr | None, BeforeValidator(database_url), BeforeValidator(blank_is_unset)
    ] = None


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, over a given mapping (the process's, or a test's)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = {k: v for k, v in environ.items() if k.startswith(PREFIX)}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environ)


def _private_file(path: Path, variable: str) -> Path:
    """`path`, if it exists and only this user (or root) may write it: its owner, and no
    one else by its mode."""
    try:
        info = path.stat()
    except OSError as e:
        raise SettingsProblem([f"{variable}: cannot read {path} ({e.strerror})"]) from e
    if not stat.S_ISREG(info.st_mode):
        raise SettingsProblem([f"{variable}: {path} is not a file"])
    if info.st_uid not in (0, os.geteuid()):
        raise SettingsProblem(
            [
                f"{variable}: {path} is owned by uid {info.st_uid}, who may change it (and "
                "send the API key elsewhere); use a file of this user's"
            ]
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SettingsProblem(
            [
                f"{variable}: {path} may be written by others (mode {info.st_mode & 0o777:o}); "
                "chmod go-w it"
            ]
        )
    return path


def _config_file(environ: Mapping[str, str]) -> Path | None:
    named = environ.get(f"{PREFIX}CONFIG_FILE", "").strip()
    if named:
        return _private_file(Path(named).expanduser(), f"{PREFIX}CONFIG_FILE")
    xdg = environ.get("XDG_CONFIG_HOME", "").strip()
    default = (Path(xdg) if xdg else Path.home() / ".config") / "donjon" / "config.toml"
    return _private_file(default, "the config file") if default.is_file() else None


def _env_file(environ: Mapping[str, str]) -> Path | None:
    named = environ.get(f"{PREFIX}ENV_FILE", "").strip()
    return _private_file(Path(named).expanduser(), f"{PREFIX}ENV_FILE") if named else None


def _toml_keys(path: Path) -> list[str]:
    """Keys of the config file are the settings' names in lower case, without the prefix;
    returned as the settings' names."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SettingsProblem([f"{path}: not a TOML file ({e})"]) from e
    known = {name.lower() for name in SettingsInput.model_fields}
    unknown = [f"{path}: unknown setting {key!r}" for key in data if key not in known]
    if unknown:
        raise SettingsProblem(unknown)
    return [key.upper() for key in data]


def _env_file_keys(path: Path) -> list[str]:
    """The settings a .env file sets, by name without the prefix."""
    from dotenv import dotenv_values

    return [k.removeprefix(PREFIX) for k in dotenv_values(path) if k.startswith(PREFIX)]


#: Settings that are credentials: a file holding one is readable by its owner only.
_CREDENTIALS = ("API_KEY", "DATABASE_URL", "REDIS_URL", "ALERT_WEBHOOK_SECRET")


def _kept_private(path: Path, keys: list[str]) -> list[str]:
    """A problem if the settings file `path` sets a credential and others may read it."""
    held = [f"{PREFIX}{key}" for key in keys if key in _CREDENTIALS]
    mode = path.stat().st_mode
    if not held or not mode & (stat.S_IRGRP | stat.S_IROTH):
        return []
    return [
        f"{path}: holds {', '.join(held)} and is readable by others (mode "
        f"{stat.S_IMODE(mode):o}); chmod 600 it"
    ]


def _not_utf8(env: Mapping[str, str]) -> list[str]:
    """Settings whose bytes were not UTF-8 (Python hands them over as lone surrogates)."""
    return [
        f"{name}: is not UTF-8 text; set it again from UTF-8 text"
        for name, value in env.items()
        if name.startswith(PREFIX) and any("\udc80" <= c <= "\udcff" for c in value)
    ]


def read_settings(environ: Mapping[str, str] | None = None) -> SettingsInput:
    """Read and validate every source; `SettingsProblem` lists every malformed value."""
    env = dict(os.environ) if environ is None else dict(environ)
    if problems := _not_utf8(env):
        raise SettingsProblem(problems)
    config_file = _config_file(env)
    env_file = _env_file(env)
    exposed: list[str] = []
    if config_file is not None:
        exposed += _kept_private(config_file, _toml_keys(config_file))
    if env_file is not None:
        exposed += _kept_private(env_file, _env_file_keys(env_file))
    if exposed:
        raise SettingsProblem(exposed)

    class _Bound(SettingsInput):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [_MappingEnvSource(settings_cls, env)]
            if env_file is not None:
                sources.append(DotEnvSettingsSource(settings_cls, env_file=env_file))
            if config_file is not None:
                sources.append(_UpperToml(settings_cls, config_file))
            return tuple(sources)

    try:
        return _Bound()
    except ValidationError as e:
        raise SettingsProblem([_describe(error, env) for error in e.errors()]) from None


class _UpperToml(TomlConfigSettingsSource):
    """The TOML file, its lower-case keys mapped to the settings' names."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls, toml_file=path)

    def __call__(self) -> dict[str, Any]:
        return {key.upper(): value for key, value in super().__call__().items()}


def _describe(error: Any, env: Mapping[str, str]) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    name = f"{PREFIX}{field}"
    message = str(error.get("msg", "is malformed")).removeprefix("Value error, ")
    value = error.get("input")
    if field in ("API_KEY", "REDIS_URL", "DATABASE_URL") or (field == "URL" and "@" in str(value)):
        value = "..."  # never echo a credential (a URL may hold a password)
    elif isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"{name}: {message}{shown}"
