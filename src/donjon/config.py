"""Settings: the only module that reads the environment.

Everything else receives a `Settings` value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from donjon.errors import Error

__all__ = ["ConfigError", "Settings", "load_settings"]

DEFAULT_PORT = 8443


class ConfigError(Error):
    """A setting is missing or malformed."""

    title = "Configuration error"


@dataclass(frozen=True)
class Settings:
    """Where Donjon keeps its state and how clients reach it."""

    data_dir: Path
    url: str
    api_key: str | None
    debug: bool = False
    #: The deploy gate: block findings at or above both (DONJON_SCAN_FAIL_ON,
    #: DONJON_SCAN_MIN_CONFIDENCE).
    scan_fail_on: str = "high"
    scan_min_confidence: str = "medium"
    #: OSV records for dependency checks (DONJON_ADVISORIES: a directory or an
    #: export zip); default: DATA_DIR/advisories when it exists.
    advisories: Path | None = None
    #: Denials (401, 403, refused input) from one client are audited as one record
    #: at once and one aggregate per window (DONJON_AUDIT_DENIAL_WINDOW_S; 0: a
    #: record each), for at most this many clients at a time (the rest: one aggregate).
    audit_denial_window_s: float = 60.0
    audit_denial_max_sources: int = 10_000

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
        return self.data_dir / "master.key"

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
    window = _number(env, "DONJON_AUDIT_DENIAL_WINDOW_S", 60.0)
    sources = _number(env, "DONJON_AUDIT_DENIAL_MAX_SOURCES", 10_000)
    return Settings(
        data_dir=data_dir,
        url=url,
        api_key=env.get("DONJON_API_KEY") or None,
        debug=env.get("DONJON_DEBUG", "") not in ("", "0", "false"),
        scan_fail_on=env.get("DONJON_SCAN_FAIL_ON", "high"),
        scan_min_confidence=env.get("DONJON_SCAN_MIN_CONFIDENCE", "medium"),
        advisories=Path(advisories).expanduser() if advisories else None,
        audit_denial_window_s=window,
        audit_denial_max_sources=max(1, int(sources)),
    )


def _number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400 * 365:  # NaN fails this too
        raise ConfigError(f"{name} must be a non-negative number (got {raw!r})",
                          hint=f"unset it for the default, {default:g}")
    return value
