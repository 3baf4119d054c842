"""URLs that may hold a password: the database's and Redis's (config.py's settings).

`masked_url` is the form logs, errors and `donjon doctor` show; `database_url` checks and
normalises DONJON_DATABASE_URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

__all__ = ["DATA_DIR_DATABASE", "database_url", "masked_url", "redis_url", "sqlite_file"]

#: The name of a data dir's own SQLite file, its database unless DONJON_DATABASE_URL says.
DATA_DIR_DATABASE = "donjon.db"
#: Schemes of a PostgreSQL URL, all served by psycopg 3 (the driver Donjon installs).
_POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")


def masked_url(url: str) -> str:
    """`url` with its user and password (and a query naming a password) masked."""
    parts = urlsplit(url)
    if _names_a_password(parts.query):  # redis://host/0?password=...
        parts = parts._replace(query="***")
    if parts.password is None and parts.username is None:
        return parts.geturl()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return parts._replace(netloc=netloc).geturl()


def _names_a_password(query: str) -> bool:
    """Whether a URL's query sets a password, its names read as the clients read them
    (decoded: redis-py and libpq take `?pass%77ord=` for `?password=`)."""
    names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
    return any("password" in name.lower() for name in [query, *names])


def database_url(value: Any) -> Any:
    """DONJON_DATABASE_URL: `sqlite:////ABSOLUTE/PATH` or `postgresql://USER[:PASSWORD]@HOST
    [:PORT]/DB` (also `postgres://` and `postgresql+psycopg://`), normalised to the
    SQLAlchemy URL of the installed driver. An in-memory SQLite is refused: the node's
    audit writer is another process, and would see another database."""
    if not isinstance(value, str):
        return value
    raw = value.strip()
    parts = _split(raw, "is not a URL")
    if parts.scheme in _POSTGRES:
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError("must name a host and a database: postgresql://USER@HOST/DB")
        return parts._replace(scheme="postgresql+psycopg").geturl()
    if parts.scheme == "sqlite":
        path = sqlite_file(raw)
        if path is None or parts.query:
            raise ValueError("must be sqlite:////ABSOLUTE/PATH (a file, no options)")
        return raw
    raise ValueError(
        "must be postgresql://USER[:PASSWORD]@HOST[:PORT]/DB or sqlite:////ABSOLUTE/PATH"
    )


def redis_url(value: Any) -> Any:
    """DONJON_REDIS_URL: redis://, rediss:// (TLS) or unix://, with a host or a path."""
    if not isinstance(value, str):
        return value
    raw = value.strip()
    parts = _split(raw, "is not a URL; give redis://[:PASSWORD@]HOST:PORT/DB")
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        return raw
    if parts.scheme == "unix" and parts.path.startswith("/"):
        return raw
    raise ValueError("must be redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS) or unix:///PATH")


def _split(raw: str, malformed: str) -> SplitResult:
    """`raw` split, its port read (a malformed one raises here): else ValueError(`malformed`)."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        raise ValueError(malformed) from None
    return parts


def sqlite_file(url: str) -> Path | None:
    """The file an `sqlite:///` URL names, if it names an absolute path; else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return path if path.is_absolute() and path.name else None
