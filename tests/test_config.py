"""Settings from the environment: the gateway's connection limits and trusted proxies."""

from __future__ import annotations

import pytest

from donjon.config import ConfigError, ConnectionSettings, load_settings


def _load(**env: str) -> object:
    return load_settings({"DONJON_DATA_DIR": "/tmp/donjon-config-test", **env})


def test_no_trusted_proxies_and_default_limits_by_default() -> None:
    """Unset, no proxy is trusted and the connection limits are the documented defaults."""
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/donjon-config-test"})
    assert settings.trusted_proxies == ()
    assert settings.connections == ConnectionSettings()


def test_trusted_proxies_are_normalised_networks() -> None:
    """CIDRs and bare addresses (their own /32 or /128) are read, spaces and empties ignored."""
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/x",
                              "DONJON_TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7,,::1 "})
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.7/32", "::1/128")


@pytest.mark.parametrize("value", ["*", "10.0.0.1/8", "proxy.example", "0.0.0.0/33"])
def test_a_malformed_trusted_proxy_is_refused(value: str) -> None:
    """Anything but a CIDR (a wildcard, host bits set, a name) is a clear configuration error."""
    with pytest.raises(ConfigError, match="DONJON_TRUSTED_PROXIES"):
        _load(DONJON_TRUSTED_PROXIES=value)


@pytest.mark.parametrize(("name", "value"), [
    ("DONJON_HEAD_TIMEOUT_S", "0"), ("DONJON_HEAD_TIMEOUT_S", "nan"),
    ("DONJON_BODY_TIMEOUT_S", "inf"), ("DONJON_MAX_HEADERS", "ten"),
    ("DONJON_MAX_HEAD_BYTES", "100"), ("DONJON_MAX_CONNECTIONS_PER_CLIENT", "0"),
    ("DONJON_MAX_CONNECTIONS", "-1"), ("DONJON_KEEPALIVE_TIMEOUT_S", "2.5"),
])
def test_a_malformed_limit_is_refused(name: str, value: str) -> None:
    """A limit that is not a number, or below its minimum, is an error naming the setting."""
    with pytest.raises(ConfigError, match=name):
        _load(**{name: value})


def test_limits_are_read() -> None:
    """Each connection limit comes from its DONJON_* setting."""
    c = load_settings({"DONJON_DATA_DIR": "/tmp/x", "DONJON_HEAD_TIMEOUT_S": "2.5",
                       "DONJON_MAX_HEADERS": "50", "DONJON_MAX_CONNECTIONS": "4096",
                       "DONJON_MAX_IN_FLIGHT": "10"}).connections
    assert (c.head_timeout_s, c.max_headers, c.max_connections, c.max_in_flight) == \
        (2.5, 50, 4096, 10)
