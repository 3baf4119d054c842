"""Settings from the environment, read in one place; credentials held masked."""

from __future__ import annotations

import ipaddress
import pickle
from pathlib import Path

import pytest

from donjon.config import (
    ConfigError,
    ConnectionSettings,
    EgressSettings,
    Settings,
    load_settings,
)
from donjon.vault import AUDIT_MAC_PURPOSE, MasterKey


def _load(**env: str) -> Settings:
    return load_settings({"DONJON_DATA_DIR": "/tmp/donjon-config-test", **env})


def test_no_trusted_proxies_and_default_limits_by_default() -> None:
    """Unset, no proxy is trusted and the connection limits are the documented defaults."""
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/donjon-config-test"})
    assert settings.trusted_proxies == ()
    assert settings.connections == ConnectionSettings()


def test_trusted_proxies_are_normalised_networks() -> None:
    """CIDRs and bare addresses (their own /32 or /128) are read, spaces and empties ignored."""
    settings = load_settings(
        {"DONJON_DATA_DIR": "/tmp/x", "DONJON_TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7,,::1 "}
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.7/32", "::1/128")


@pytest.mark.parametrize("value", ["*", "10.0.0.1/8", "proxy.example", "0.0.0.0/33"])
def test_a_malformed_trusted_proxy_is_refused(value: str) -> None:
    """Anything but a CIDR (a wildcard, host bits set, a name) is a clear configuration error."""
    with pytest.raises(ConfigError, match="DONJON_TRUSTED_PROXIES"):
        _load(DONJON_TRUSTED_PROXIES=value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DONJON_HEAD_TIMEOUT_S", "0"),
        ("DONJON_HEAD_TIMEOUT_S", "nan"),
        ("DONJON_BODY_TIMEOUT_S", "inf"),
        ("DONJON_MAX_HEADERS", "ten"),
        ("DONJON_MAX_HEAD_BYTES", "100"),
        ("DONJON_MAX_CONNECTIONS_PER_CLIENT", "0"),
        ("DONJON_MAX_CONNECTIONS", "-1"),
        ("DONJON_KEEPALIVE_TIMEOUT_S", "2.5"),
        ("DONJON_CONNECT_RATE", "0"),
        ("DONJON_CONNECT_RATE", "-5"),
        ("DONJON_CONNECT_RATE", "inf"),
        ("DONJON_CONNECT_RATE", "fast"),
        ("DONJON_CONNECT_BURST", "0"),
        ("DONJON_CONNECT_BURST", "1.5"),
    ],
)
def test_a_malformed_limit_is_refused(name: str, value: str) -> None:
    """A limit that is not a number, or below its minimum, is an error naming the setting."""
    with pytest.raises(ConfigError, match=name):
        _load(**{name: value})


def test_connect_rate_is_read_and_on_by_default() -> None:
    """DONJON_CONNECT_RATE/BURST are read; unset, the gate is on at 100/s and 256 at once."""
    assert _load().connections.connect_rate == 100.0
    assert _load().connections.connect_burst == 256
    c = _load(DONJON_CONNECT_RATE="2.5", DONJON_CONNECT_BURST="20").connections
    assert (c.connect_rate, c.connect_burst) == (2.5, 20)


def test_limits_are_read() -> None:
    """Each connection limit comes from its DONJON_* setting."""
    c = load_settings(
        {
            "DONJON_DATA_DIR": "/tmp/x",
            "DONJON_HEAD_TIMEOUT_S": "2.5",
            "DONJON_MAX_HEADERS": "50",
            "DONJON_MAX_CONNECTIONS": "4096",
            "DONJON_MAX_IN_FLIGHT": "10",
        }
    ).connections
    assert (c.head_timeout_s, c.max_headers, c.max_connections, c.max_in_flight) == (
        2.5,
        50,
        4096,
        10,
    )


def test_repr_of_settings_shows_no_key() -> None:
    """The API key is a Secret: repr(settings) and str() of it never show the value."""
    key = "dj_0123456789abcdef_" + "s" * 43
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/x", "DONJON_API_KEY": key})
    assert key not in repr(settings) and "s" * 43 not in repr(settings)
    assert settings.api_key is not None
    assert key not in str(settings.api_key) and settings.api_key.reveal() == key


def test_master_key_and_its_subkeys_are_masked(tmp_path: Path) -> None:
    """Neither the master key nor a key derived from it shows in repr, str or f-strings."""
    master = MasterKey.create(tmp_path / "master.key")
    raw = (tmp_path / "master.key").read_bytes()
    sub = master.derive(AUDIT_MAC_PURPOSE)
    for shown in (repr(master), repr(sub), str(sub), f"{sub}", repr([sub])):
        assert raw.hex() not in shown and repr(raw) not in shown
        assert sub.reveal().hex() not in shown and repr(sub.reveal()) not in shown
    with pytest.raises(TypeError):
        pickle.dumps(sub)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DONJON_SCAN_FAIL_ON", "severe"),
        ("DONJON_SCAN_MIN_CONFIDENCE", "sure"),
        ("DONJON_AUDIT_DENIAL_WINDOW_S", "soon"),
        ("DONJON_AUDIT_DENIAL_MAX_SOURCES", "0"),
    ],
)
def test_malformed_settings_name_their_variable(name: str, value: str) -> None:
    """A malformed value is a ConfigError that names the variable, not a crash later."""
    with pytest.raises(ConfigError, match=name):
        load_settings({"DONJON_DATA_DIR": "/tmp/x", name: value})


def test_sandbox_settings_are_read_here() -> None:
    """DONJON_SANDBOX_* are read by config.py like every other setting."""
    settings = load_settings(
        {
            "DONJON_DATA_DIR": "/tmp/x",
            "DONJON_SANDBOX_UID": "4242",
            "DONJON_SANDBOX_UID_RANGE": "200000-201023",
            "DONJON_SANDBOX_DIR": "/srv/stage",
            "DONJON_SANDBOX_PYTHON": "/usr/bin/python3",
        }
    )
    assert settings.sandbox.uid == 4242 and settings.sandbox.gid is None
    assert settings.sandbox.id_range == (200000, 201023)
    assert str(settings.sandbox.staging_dir) == "/srv/stage"
    assert str(settings.sandbox.python) == "/usr/bin/python3"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DONJON_SANDBOX_UID", "0"),
        ("DONJON_SANDBOX_GID", "0"),
        ("DONJON_SANDBOX_UID", "nobody"),
        ("DONJON_SANDBOX_UID_RANGE", "10-20"),
        ("DONJON_SANDBOX_UID_RANGE", "100000"),
    ],
)
def test_malformed_sandbox_settings_name_their_variable(name: str, value: str) -> None:
    """Host root or a malformed id is refused by name before any sandbox starts."""
    with pytest.raises(ConfigError, match=name):
        load_settings({"DONJON_DATA_DIR": "/tmp/x", name: value})


def test_jwks_ca_file_must_exist(tmp_path: Path) -> None:
    """DONJON_JWKS_CA_FILE names an existing file, or the node does not start."""
    base = {"DONJON_DATA_DIR": "/tmp/donjon-config-test"}
    assert load_settings(base).jwks_ca_file is None
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert load_settings({**base, "DONJON_JWKS_CA_FILE": str(ca)}).jwks_ca_file == ca
    with pytest.raises(ConfigError):
        load_settings({**base, "DONJON_JWKS_CA_FILE": str(tmp_path / "missing.pem")})


def test_every_malformed_value_is_reported_at_once() -> None:
    """Several bad settings give one error that names each of them, one per line."""
    bad = {
        "DONJON_URL": "ftp://node",
        "DONJON_MAX_HEADERS": "ten",
        "DONJON_HEAD_TIMEOUT_S": "0",
        "DONJON_SANDBOX_UID": "0",
        "DONJON_TRUSTED_PROXIES": "*",
        "DONJON_DEBUG": "maybe",
    }
    with pytest.raises(ConfigError) as info:
        _load(**bad)
    lines = info.value.message.splitlines()
    assert lines[0] == "6 settings are malformed:"
    for name in bad:
        assert sum(line.strip().startswith(f"{name}:") for line in lines) == 1, lines


def test_the_api_key_is_never_echoed_in_an_error() -> None:
    """A malformed setting beside the key: the error shows the variable, never the key."""
    key = "dj_0123456789abcdef_" + "k" * 43
    with pytest.raises(ConfigError) as info:
        _load(DONJON_API_KEY=key, DONJON_MAX_HEADERS="x")
    assert key not in info.value.message and "k" * 43 not in info.value.message


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_config_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    """DONJON_CONFIG_FILE (TOML, names without the prefix) sets values; env overrides them."""
    config = _private(
        tmp_path / "config.toml",
        'url = "https://node.example:9443"\nmax_in_flight = 7\nscan_fail_on = "critical"\n',
    )
    settings = _load(DONJON_CONFIG_FILE=str(config), DONJON_MAX_IN_FLIGHT="9")
    assert settings.url == "https://node.example:9443"
    assert settings.connections.max_in_flight == 9
    assert settings.scan_fail_on == "critical"


def test_the_default_config_file_is_found(tmp_path: Path) -> None:
    """Without DONJON_CONFIG_FILE, $XDG_CONFIG_HOME/donjon/config.toml is read when present."""
    (tmp_path / "donjon").mkdir()
    _private(tmp_path / "donjon" / "config.toml", "max_headers = 50\n")
    settings = _load(XDG_CONFIG_HOME=str(tmp_path))
    assert settings.connections.max_headers == 50


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_in_flight = 0\n", "DONJON_MAX_IN_FLIGHT"),
        ("bogus = 1\n", "unknown setting 'bogus'"),
        ("url = \n", "not a TOML file"),
    ],
)
def test_a_malformed_config_file_is_refused(tmp_path: Path, text: str, needle: str) -> None:
    """A bad value, an unknown key or broken TOML in the file is a clear error."""
    config = _private(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match=needle):
        _load(DONJON_CONFIG_FILE=str(config))


def test_a_config_file_others_may_write_is_refused(tmp_path: Path) -> None:
    """A group- or world-writable settings file could redirect the CLI: refused, by name."""
    config = _private(tmp_path / "config.toml", 'url = "https://127.0.0.1:1"\n')
    config.chmod(0o664)
    with pytest.raises(ConfigError, match="may be written by others"):
        _load(DONJON_CONFIG_FILE=str(config))


def test_an_env_file_is_read_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DONJON_ENV_FILE is read; a .env lying in the working directory is not."""
    stray = _private(tmp_path / ".env", "DONJON_URL=https://attacker.example\n")
    monkeypatch.chdir(tmp_path)
    assert "attacker" not in _load().url
    named = _private(tmp_path / "donjon.env", "DONJON_URL=https://node.example\n")
    assert _load(DONJON_ENV_FILE=str(named)).url == "https://node.example"
    assert stray.exists()


def test_the_cli_finds_the_local_node_ca(tmp_path: Path) -> None:
    """A loopback URL is verified with DATA_DIR/tls/cert.pem; others with the system's CAs."""
    data = tmp_path / "data"
    (data / "tls").mkdir(parents=True)
    (data / "tls" / "cert.pem").write_text("x")
    base = {"DONJON_DATA_DIR": str(data)}
    for url in ("https://127.0.0.1:8443", "https://localhost:9000", "https://[::1]:8443"):
        assert load_settings({**base, "DONJON_URL": url}).client_ca == data / "tls" / "cert.pem"
    assert load_settings({**base, "DONJON_URL": "https://node.example"}).client_ca is None
    other = tmp_path / "ca.pem"
    other.write_text("x")
    chosen = load_settings({**base, "DONJON_CA_BUNDLE": str(other)}).client_ca
    assert chosen == other


def test_egress_settings_default_to_nothing_open() -> None:
    """Unset: no network opened, the system resolver, the documented caps."""
    egress = _load().egress
    assert egress == EgressSettings()
    assert egress.allow_networks == () and egress.dns is None
    assert (egress.max_bytes_per_call, egress.max_connections_per_call) == (64 * 1024 * 1024, 32)
    assert egress.max_connection_s == 60.0


def test_egress_settings_are_read() -> None:
    """DONJON_EGRESS_*: networks (commas or spaces), DNS server, caps."""
    egress = _load(
        DONJON_EGRESS_ALLOW_NETWORKS="127.0.0.2/32 10.20.0.0/16,fd00::/8",
        DONJON_EGRESS_DNS="127.0.0.1:5353",
        DONJON_EGRESS_MAX_BYTES="1048576",
        DONJON_EGRESS_MAX_CONNECTIONS="4",
        DONJON_EGRESS_MAX_CONNECTION_S="2.5",
    ).egress
    assert egress.allow_networks == (
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert egress.dns == "127.0.0.1:5353"
    assert (egress.max_bytes_per_call, egress.max_connections_per_call) == (1048576, 4)
    assert egress.max_connection_s == 2.5


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("DONJON_EGRESS_ALLOW_NETWORKS", "10.0.0.1/8", "'10.0.0.1/8'"),
        ("DONJON_EGRESS_ALLOW_NETWORKS", "10.0.0.0/8,intranet", "'intranet'"),
        ("DONJON_EGRESS_DNS", "dns.example.com", "127.0.0.1:5353"),
        ("DONJON_EGRESS_DNS", "127.0.0.1:0", "127.0.0.1:5353"),
        ("DONJON_EGRESS_MAX_BYTES", "0", "DONJON_EGRESS_MAX_BYTES"),
        ("DONJON_EGRESS_MAX_CONNECTIONS", "0", "DONJON_EGRESS_MAX_CONNECTIONS"),
        ("DONJON_EGRESS_MAX_CONNECTION_S", "nan", "DONJON_EGRESS_MAX_CONNECTION_S"),
    ],
)
def test_malformed_egress_settings_are_refused(name: str, value: str, needle: str) -> None:
    """A malformed egress setting stops the load, naming the variable and what is wrong."""
    with pytest.raises(ConfigError) as e:
        _load(**{name: value})
    assert name in e.value.message and needle in e.value.message


def test_the_redis_url_is_read_and_its_password_never_shown() -> None:
    """DONJON_REDIS_URL is a Secret: repr(settings) hides it, and the form logs and doctor
    print masks its password (also one given as ?password=)."""
    url = "redis://limits:s3cr3t-pw@10.0.0.7:6380/2"
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/x", "DONJON_REDIS_URL": url})
    assert settings.redis_url is not None and settings.redis_url.reveal() == url
    assert "s3cr3t-pw" not in repr(settings)
    assert settings.redis_url_shown == "redis://***@10.0.0.7:6380/2"
    query = load_settings(
        {"DONJON_DATA_DIR": "/tmp/x", "DONJON_REDIS_URL": "rediss://h:6379/0?password=s3cr3t"}
    )
    assert "s3cr3t" not in query.redis_url_shown
    assert load_settings({"DONJON_DATA_DIR": "/tmp/x"}).redis_url is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://10.0.0.7:6379/0?pass%77ord=s3cr3t",  # the client decodes the name
        "redis://10.0.0.7:6379/0?db=0&%50ASSWORD=s3cr3t",
        "rediss://10.0.0.7/0?ssl_pass%77ord=s3cr3t",
    ],
)
def test_a_password_given_in_an_encoded_query_is_masked_too(url: str) -> None:
    """The Redis client reads `?pass%77ord=` as its password (query names are decoded): the
    form logs, audit records and doctor show masks it as it masks `?password=`."""
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/x", "DONJON_REDIS_URL": url})
    assert "s3cr3t" not in settings.redis_url_shown
    assert settings.redis_url_shown.startswith("redis")


@pytest.mark.parametrize(
    "bad", ["http://:pw@10.0.0.7:6379", "redis://:pw@", "redis://h:99999/pw", "unix://relative"]
)
def test_a_malformed_redis_url_is_refused_without_echoing_it(bad: str) -> None:
    """Not redis://, rediss:// or unix:///PATH: a clear error that never shows the value."""
    with pytest.raises(ConfigError) as info:
        _load(DONJON_REDIS_URL=bad)
    assert "DONJON_REDIS_URL: " in info.value.message
    assert "redis://[:PASSWORD@]HOST:PORT/DB" in info.value.message
    assert bad not in info.value.message and "pw" not in info.value.message


def test_request_limits_default_to_lambda_caps_and_are_read() -> None:
    """6 MiB body ceiling and response limit, a 60 s body deadline; each from its setting."""
    default = load_settings({"DONJON_DATA_DIR": "/tmp/x"})
    assert default.requests.max_body_bytes == default.requests.max_response_bytes == 6 * 2**20
    assert default.connections.body_deadline_s == 60.0
    s = load_settings(
        {
            "DONJON_DATA_DIR": "/tmp/x",
            "DONJON_MAX_BODY_BYTES": "2097152",
            "DONJON_MAX_RESPONSE_BYTES": "1048576",
            "DONJON_BODY_DEADLINE_S": "5",
        }
    )
    assert (s.requests.max_body_bytes, s.requests.max_response_bytes) == (2 * 2**20, 2**20)
    assert s.connections.body_deadline_s == 5.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DONJON_MAX_BODY_BYTES", "100"),
        ("DONJON_MAX_BODY_BYTES", str(64 * 2**20)),
        ("DONJON_MAX_RESPONSE_BYTES", str(7 * 2**20)),
        ("DONJON_MAX_RESPONSE_BYTES", "1MiB"),
        ("DONJON_BODY_DEADLINE_S", "0"),
    ],
)
def test_a_request_limit_out_of_range_is_refused(name: str, value: str) -> None:
    """Below 1 KiB, over the ceiling (32 MiB body, 6 MiB response), not bytes: named error."""
    with pytest.raises(ConfigError, match=name):
        _load(**{name: value})


def test_the_audit_outbox_drain_is_read_and_bounded() -> None:
    """The drain's cadence and lease are read (30 s and 300 s by default); a lease under
    a second or a cadence of zero is refused, naming its variable."""
    assert (_load().audit.outbox_drain_s, _load().audit.outbox_lease_s) == (30.0, 300.0)
    audit = _load(DONJON_AUDIT_OUTBOX_DRAIN_S="0.5", DONJON_AUDIT_OUTBOX_LEASE_S="90").audit
    assert (audit.outbox_drain_s, audit.outbox_lease_s) == (0.5, 90.0)
    for name, value in (
        ("DONJON_AUDIT_OUTBOX_DRAIN_S", "0"),
        ("DONJON_AUDIT_OUTBOX_LEASE_S", "0.5"),
    ):
        with pytest.raises(ConfigError, match=name):
            _load(**{name: value})
