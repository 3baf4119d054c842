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

import base64
import binascii
import ipaddress
import math
import os
import re
import shlex
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

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

__all__ = ["PREFIX", "SettingsInput", "SettingsProblem", "read_settings"]

PREFIX = "DONJON_"


class SettingsProblem(Exception):
    """The sources could not be read, or values are malformed: one line each in `problems`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _blank_is_unset(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _url(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (set it to https://HOST:PORT)")
    return value.rstrip("/") if isinstance(value, str) else value


def _id_range(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    first, sep, last = value.strip().partition("-")
    lo, hi = (int(first), int(last)) if sep and first.isdigit() and last.isdigit() else (0, -1)
    if lo < 1000 or hi - lo + 1 < 1024 or hi >= 2**32 - 1:
        raise ValueError(
            "must be a range like 100000-165535: first-last, both above 999, "
            "with at least 1024 ids, used by no account"
        )
    return (lo, hi)


def _networks(value: Any) -> Any:
    """Comma-separated CIDRs (a bare address is its own /32 or /128), normalised."""
    if not isinstance(value, str):
        return value
    out = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as e:
            raise ValueError(
                f"{item!r} is not a network ({e}); give CIDRs such as 10.0.0.0/8"
            ) from e
    return tuple(out)


def _names(value: Any) -> Any:
    """Comma- or space-separated names, lower case, each once."""
    if not isinstance(value, str):
        return value
    return tuple(dict.fromkeys(n.lower() for n in value.replace(",", " ").split()))


def _egress_networks(value: Any) -> Any:
    """DONJON_EGRESS_ALLOW_NETWORKS: CIDRs separated by commas or spaces, normalised."""
    if not isinstance(value, str):
        return value
    # Imported here: settings are read before, and by, every subsystem (no cycles).
    from donjon.egress.addresses import AddressError, parse_networks

    try:
        return tuple(str(n) for n in parse_networks(value))
    except AddressError as e:
        raise ValueError(f"{e.message}; {e.hint}") from None


def _dns_server(value: Any) -> Any:
    """DONJON_EGRESS_DNS: an IP address and optional port (``127.0.0.1:5353``)."""
    if not isinstance(value, str):
        return value
    from donjon.egress.resolve import ResolveError, parse_dns_server

    try:
        parse_dns_server(value)
    except ResolveError as e:
        raise ValueError(e.hint) from None
    return value.strip()


def _checkpoint_webhook(value: Any) -> Any:
    """DONJON_AUDIT_CHECKPOINT_WEBHOOK: checked by the sink that uses it."""
    if not isinstance(value, str):
        return value
    from donjon.audit.sinks import SinkError, parse_webhook_url

    try:
        parse_webhook_url(value)
    except SinkError as e:
        raise ValueError(f"{e.message}; {e.hint}") from None
    return value.strip()


def _checkpoint_syslog(value: Any) -> Any:
    """DONJON_AUDIT_CHECKPOINT_SYSLOG: checked by the sink that uses it."""
    if not isinstance(value, str):
        return value
    from donjon.audit.sinks import SinkError, parse_syslog_target

    try:
        parse_syslog_target(value)
    except SinkError as e:
        raise ValueError(f"{e.message}; {e.hint}") from None
    return value.strip()


def _redis_url(value: Any) -> Any:
    """DONJON_REDIS_URL: redis://, rediss:// (TLS) or unix://, with a host or a path."""
    if not isinstance(value, str):
        return value
    raw = value.strip()
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        raise ValueError("is not a URL; give redis://[:PASSWORD@]HOST:PORT/DB") from None
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        return raw
    if parts.scheme == "unix" and parts.path.startswith("/"):
        return raw
    raise ValueError("must be redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS) or unix:///PATH")


def _absolute(value: Any) -> Any:
    if isinstance(value, str) and not Path(value).expanduser().is_absolute():
        raise ValueError("must be an absolute path")
    return value


def _existing(value: Any) -> Any:
    if isinstance(value, str) and not Path(value).expanduser().exists():
        raise ValueError(f"names {value}, which does not exist")
    return value


def _command(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return tuple(shlex.split(value))
    except ValueError as e:
        raise ValueError(f"is not a command line ({e}); quote it like a shell's words") from e


_DETECTOR = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,127}$")


def _assignments(value: Any, names: re.Pattern[str], values: tuple[str, ...]) -> Any:
    """`name=value,...` pairs (comma- or space-separated), each value one of `values`."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in value.replace(",", " ").split():
        name, sep, chosen = item.partition("=")
        name, chosen = name.strip().lower(), chosen.strip().lower()
        if not sep or not names.match(name):
            raise ValueError(f"{item!r} is not name=value (e.g. auth_failures=block)")
        if chosen not in values:
            raise ValueError(f"{item!r}: the value must be one of {', '.join(values)}")
        pairs[name] = chosen
    return tuple(pairs.items())


def _monitor_modes(value: Any) -> Any:
    """DONJON_MONITOR_MODES: `detector=learn|alert|block,...`."""
    return _assignments(value, _DETECTOR, ("learn", "alert", "block"))


def _monitor_responses(value: Any) -> Any:
    """DONJON_MONITOR_RESPONSES: `finding_kind=throttle|revoke|quarantine|none,...`."""
    return _assignments(value, _KIND, ("throttle", "revoke", "quarantine", "none"))


def _https_urls(value: Any) -> Any:
    """DONJON_ALERT_WEBHOOKS: comma- or space-separated https:// URLs, each with a host."""
    if not isinstance(value, str):
        return value
    urls = tuple(dict.fromkeys(value.replace(",", " ").split()))
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{url!r}: each webhook must be an https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError(f"{url!r}: no credentials in a webhook URL (the secret signs)")
    return urls


def _webhook_secret(value: Any) -> Any:
    """DONJON_ALERT_WEBHOOK_SECRET: `whsec_` and base64 of at least 24 bytes."""
    if not isinstance(value, str) or not value.strip():
        return value
    raw = value.strip()
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not raw.startswith("whsec_") or len(key) < 24:
        raise ValueError("must be whsec_ and base64 of 24 to 64 random bytes")
    if len(key) > 64:
        raise ValueError("must be whsec_ and base64 of 24 to 64 random bytes")
    return raw


Text = Annotated[str | None, BeforeValidator(_blank_is_unset)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]
ExistingPath = Annotated[str | None, BeforeValidator(_existing), BeforeValidator(_blank_is_unset)]
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
    URL: Annotated[str | None, BeforeValidator(_url), BeforeValidator(_blank_is_unset)] = None
    API_KEY: SecretStr | None = None
    DEBUG: Annotated[bool, BeforeValidator(_lower)] = False
    SCAN_FAIL_ON: Annotated[
        Literal["low", "medium", "high", "critical"], BeforeValidator(_lower)
    ] = "high"
    SCAN_MIN_CONFIDENCE: Annotated[Literal["low", "medium", "high"], BeforeValidator(_lower)] = (
        "medium"
    )
    ADVISORIES: ExistingPath = None
    SANDBOX_UID: HostId = None
    SANDBOX_GID: HostId = None
    SANDBOX_UID_RANGE: Annotated[
        tuple[int, int] | None,
        NoDecode,
        BeforeValidator(_id_range),
        BeforeValidator(_blank_is_unset),
    ] = None
    SANDBOX_DIR: Text = None
    SANDBOX_PYTHON: Text = None
    #: The node-wide ceilings over all of a node's sandboxes (sandbox/budget.py); unset: auto.
    SANDBOX_MEMORY_BUDGET_MB: Annotated[int | None, Field(ge=64)] = None
    SANDBOX_PIDS_BUDGET: Annotated[int | None, Field(ge=32)] = None
    #: Controls `donjon serve` must find in force (controls/), besides its recorded baseline.
    REQUIRE_CONTROLS: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_names)] = ()
    TRUSTED_PROXIES: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_networks)] = ()
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
        str | None, BeforeValidator(_checkpoint_webhook), BeforeValidator(_blank_is_unset)
    ] = None
    AUDIT_CHECKPOINT_SYSLOG: Annotated[
        str | None, BeforeValidator(_checkpoint_syslog), BeforeValidator(_blank_is_unset)
    ] = None
    MASTER_KEY_FILE: Annotated[
        str | None, BeforeValidator(_absolute), BeforeValidator(_blank_is_unset)
    ] = None
    KMS_COMMAND: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_command)] = ()
    KMS_TIMEOUT_S: Annotated[Seconds, Field(ge=0.1)] = 10.0
    LOG_RETENTION_DAYS: Annotated[int, Field(ge=1)] = 30
    JWKS_CA_FILE: ExistingPath = None
    SHUTDOWN_GRACE_S: Annotated[Seconds, Field(ge=0)] = 10.0
    CA_BUNDLE: ExistingPath = None
    #: A region name such as us-east-1 (the Lambda Invoke API's SigV4 scope).
    LAMBDA_REGION: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")] = (
        "us-east-1"
    )
    EGRESS_ALLOW_NETWORKS: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(_egress_networks)
    ] = ()
    EGRESS_DNS: Annotated[
        str | None, BeforeValidator(_dns_server), BeforeValidator(_blank_is_unset)
    ] = None
    EGRESS_MAX_BYTES: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    EGRESS_MAX_CONNECTIONS: Annotated[int, Field(ge=1)] = 32
    EGRESS_MAX_CONNECTION_S: Annotated[Seconds, Field(ge=0.1)] = 60.0
    #: The monitor (monitor/): detector modes, responses, learning, dedup, rules' thresholds.
    MONITOR_MODES: Annotated[
        tuple[tuple[str, str], ...], NoDecode, BeforeValidator(_monitor_modes)
    ] = ()
    MONITOR_RESPONSES: Annotated[
        tuple[tuple[str, str], ...], NoDecode, BeforeValidator(_monitor_responses)
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
    ALERT_WEBHOOKS: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_https_urls)] = ()
    ALERT_WEBHOOK_SECRET: Annotated[
        SecretStr | None, BeforeValidator(_webhook_secret), BeforeValidator(_blank_is_unset)
    ] = None
    ALERT_WEBHOOK_CA: ExistingPath = None
    #: The Redis that shares limits, quotas and concurrency between nodes (ratelimit/redis.py);
    #: unset: each node's own memory. Its password is never shown.
    REDIS_URL: Annotated[
        SecretStr | None, BeforeValidator(_redis_url), BeforeValidator(_blank_is_unset)
    ] = None


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, over a given mapping (the process's, or a test's)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = {k: v for k, v in environ.items() if k.startswith(PREFIX)}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environ)


def _private_file(path: Path, variable: str) -> Path:
    """`path`, if it exists and only its owner (or root) may write it."""
    try:
        info = path.stat()
    except OSError as e:
        raise SettingsProblem([f"{variable}: cannot read {path} ({e.strerror})"]) from e
    if not stat.S_ISREG(info.st_mode):
        raise SettingsProblem([f"{variable}: {path} is not a file"])
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
    """Keys of the config file are the settings' names in lower case, without the prefix."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SettingsProblem([f"{path}: not a TOML file ({e})"]) from e
    known = {name.lower() for name in SettingsInput.model_fields}
    return [f"{path}: unknown setting {key!r}" for key in data if key not in known]


def read_settings(environ: Mapping[str, str] | None = None) -> SettingsInput:
    """Read and validate every source; `SettingsProblem` lists every malformed value."""
    env = dict(os.environ) if environ is None else dict(environ)
    config_file = _config_file(env)
    env_file = _env_file(env)
    if config_file is not None and (unknown := _toml_keys(config_file)):
        raise SettingsProblem(unknown)

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
    if field in ("API_KEY", "REDIS_URL"):
        value = "..."  # never echo a credential (a Redis URL may hold a password)
    elif isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"{name}: {message}{shown}"
