"""The checks of settings values that pydantic's types do not make: each takes the
raw value (text from the environment, a .env or a TOML file) and returns it cleaned
or raises ValueError naming what is wrong (config_sources.py applies them)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "absolute",
    "advisory_source_url",
    "assignments",
    "blank_is_unset",
    "checkpoint_syslog",
    "checkpoint_webhook",
    "command",
    "dns_server",
    "egress_networks",
    "existing",
    "https_urls",
    "id_range",
    "loopback_host",
    "lower",
    "monitor_modes",
    "monitor_responses",
    "names",
    "networks",
    "url",
    "webhook_secret",
]


def blank_is_unset(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def url(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not value.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (set it to https://HOST:PORT)")
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must hold no user or password (the key goes in DONJON_API_KEY)")
    try:
        parts.port  # noqa: B018 - urllib checks the port's range when it is read
    except ValueError:
        raise ValueError("has a port out of range (1 to 65535)") from None
    if not parts.hostname:
        raise ValueError("names no host (set it to https://HOST:PORT)")
    if parts.scheme == "http" and not loopback_host(parts.hostname):
        raise ValueError(
            "http:// would send the API key in clear; use https:// (http:// only to a "
            "loopback address, for a node served with --unsafe-http)"
        )
    return value.rstrip("/")


def loopback_host(host: str) -> bool:
    """Whether a URL's host is this host's: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: An API key as `donjon init` prints it: printable ASCII, no space (it goes in a header).
_TOKEN = re.compile(r"[\x21-\x7e]+")


def api_key(value: Any) -> Any:
    if isinstance(value, str) and not _TOKEN.fullmatch(value):
        raise ValueError("must be printable ASCII with no space, as `donjon init` printed it")
    return value


def id_range(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    first, sep, last = value.strip().partition("-")
    digits = sep and f"{first}{last}".isascii() and first.isdigit() and last.isdigit()
    lo, hi = (int(first), int(last)) if digits else (0, -1)
    if lo < 1000 or hi - lo + 1 < 1024 or hi >= 2**32 - 1:
        raise ValueError(
            "must be a range like 100000-165535: first-last, both above 999, "
            "with at least 1024 ids, used by no account"
        )
    return (lo, hi)


def networks(value: Any) -> Any:
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


def names(value: Any) -> Any:
    """Comma- or space-separated names, lower case, each once."""
    if not isinstance(value, str):
        return value
    return tuple(dict.fromkeys(n.lower() for n in value.replace(",", " ").split()))


def egress_networks(value: Any) -> Any:
    """DONJON_EGRESS_ALLOW_NETWORKS: CIDRs separated by commas or spaces, normalised."""
    if not isinstance(value, str):
        return value
    # Imported here: settings are read before, and by, every subsystem (no cycles).
    from donjon.egress.addresses import AddressError, parse_networks

    try:
        return tuple(str(n) for n in parse_networks(value))
    except AddressError as e:
        raise ValueError(f"{e.message}; {e.hint}") from None


def dns_server(value: Any) -> Any:
    """DONJON_EGRESS_DNS: an IP address and optional port (``127.0.0.1:5353``)."""
    if not isinstance(value, str):
        return value
    from donjon.egress.resolve import ResolveError, parse_dns_server

    try:
        parse_dns_server(value)
    except ResolveError as e:
        raise ValueError(e.hint) from None
    return value.strip()


def checkpoint_webhook(value: Any) -> Any:
    """DONJON_AUDIT_CHECKPOINT_WEBHOOK: checked by the sink that uses it."""
    if not isinstance(value, str):
        return value
    from donjon.audit.sinks import SinkError, parse_webhook_url

    try:
        parse_webhook_url(value)
    except SinkError as e:
        raise ValueError(f"{e.message}; {e.hint}") from None
    return value.strip()


def advisory_source_url(value: Any) -> Any:
    """DONJON_ADVISORY_SOURCE_URL: https://..., or http:// to a loopback address only."""
    if not isinstance(value, str):
        return value
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("not an http(s) URL of an OSV export zip")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    if parts.scheme == "http" and not loopback_host(parts.hostname):
        raise ValueError("must be https:// unless it is on this host")
    return value.strip()


def checkpoint_syslog(value: Any) -> Any:
    """DONJON_AUDIT_CHECKPOINT_SYSLOG: checked by the sink that uses it."""
    if not isinstance(value, str):
        return value
    from donjon.audit.sinks import SinkError, parse_syslog_target

    try:
        parse_syslog_target(value)
    except SinkError as e:
        raise ValueError(f"{e.message}; {e.hint}") from None
    return value.strip()


def absolute(value: Any) -> Any:
    if isinstance(value, str) and not Path(value).expanduser().is_absolute():
        raise ValueError("must be an absolute path")
    return value


def existing(value: Any) -> Any:
    if isinstance(value, str) and not Path(value).expanduser().exists():
        raise ValueError(f"names {value}, which does not exist")
    return value


def command(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return tuple(shlex.split(value))
    except ValueError as e:
        raise ValueError(f"is not a command line ({e}); quote it like a shell's words") from e


_DETECTOR = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,127}$")


def assignments(value: Any, names: re.Pattern[str], values: tuple[str, ...]) -> Any:
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


def monitor_modes(value: Any) -> Any:
    """DONJON_MONITOR_MODES: `detector=learn|alert|block,...`."""
    return assignments(value, _DETECTOR, ("learn", "alert", "block"))


def monitor_responses(value: Any) -> Any:
    """DONJON_MONITOR_RESPONSES: `finding_kind=throttle|revoke|quarantine|none,...`."""
    return assignments(value, _KIND, ("throttle", "revoke", "quarantine", "none"))


def https_urls(value: Any) -> Any:
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


def webhook_secret(value: Any) -> Any:
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
