"""Settings with hostile or broken values: a clear error naming the variable, no traceback.

Environment values that are not UTF-8 (Python hands them over as lone surrogates),
control characters in a credential, a URL that is no URL, a CA bundle that holds no
certificate, and a settings file that holds a credential others may read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from donjon.cli.client import ApiClient, ApiError
from donjon.config import ConfigError, Settings, load_settings

KEY = "dj_0123456789abcdef_" + "k" * 43


def _load(**env: str) -> Settings:
    return load_settings({"DONJON_DATA_DIR": "/tmp/donjon-config-test", **env})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DONJON_URL", "https://node.example/\udcff"),
        ("DONJON_DATA_DIR", "/tmp/\udcff\udcfe"),
        ("DONJON_API_KEY", "dj_\udcff"),
        ("DONJON_MONITOR_THROTTLE", "10/minute\udcff"),
    ],
)
def test_a_value_that_is_not_utf8_is_refused(name: str, value: str) -> None:
    """An environment value of bytes that are not UTF-8 is refused, by name."""
    with pytest.raises(ConfigError, match=rf"{name}: .*not UTF-8") as info:
        _load(**{name: value})
    assert "\udcff" not in info.value.message


@pytest.mark.parametrize("value", [KEY + "\r\nX-Injected: 1", KEY + "\x00", "dj_\x1b[31m"])
def test_an_api_key_with_control_characters_is_refused(value: str) -> None:
    """DONJON_API_KEY with CR, LF, NUL or ESC is refused, and never echoed."""
    with pytest.raises(ConfigError, match="DONJON_API_KEY") as info:
        _load(DONJON_API_KEY=value)
    assert "k" * 43 not in info.value.message


@pytest.mark.parametrize(
    "value", ["https://localhost:99999", "https://user:pw@localhost:8443", "https://:8443"]
)
def test_a_url_that_is_no_node_address_is_refused(value: str) -> None:
    """A port out of range, a password in the URL or no host: refused, the password unshown."""
    with pytest.raises(ConfigError, match="DONJON_URL") as info:
        _load(DONJON_URL=value)
    assert "pw" not in info.value.message


def test_a_ca_bundle_that_holds_no_certificate_is_a_clear_error(tmp_path: Path) -> None:
    """DONJON_CA_BUNDLE naming a file that is not PEM is an ApiError naming it."""
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"\x00" * 64)
    settings = _load(
        DONJON_URL="https://node.example:8443", DONJON_API_KEY=KEY, DONJON_CA_BUNDLE=str(bundle)
    )
    with pytest.raises(ApiError, match="cannot load the CA file") as info:
        ApiClient(settings)
    assert str(bundle) in info.value.message and "DONJON_CA_BUNDLE" in info.value.hint


@pytest.mark.parametrize(
    ("variable", "name", "text"),
    [
        ("DONJON_CONFIG_FILE", "config.toml", f'api_key = "{KEY}"\n'),
        ("DONJON_ENV_FILE", "donjon.env", f"DONJON_API_KEY={KEY}\n"),
        (
            "DONJON_ENV_FILE",
            "db.env",
            "DONJON_DATABASE_URL=postgresql://donjon:hunter2@db.example/donjon\n",
        ),
    ],
)
def test_a_settings_file_holding_a_credential_others_may_read_is_refused(
    tmp_path: Path, variable: str, name: str, text: str
) -> None:
    """A settings file with a key or a password in it must be 0600: 0644 is refused."""
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others") as info:
        _load(**{variable: str(path)})
    assert "k" * 43 not in info.value.message and "hunter2" not in info.value.message
    path.chmod(0o600)
    _load(**{variable: str(path)})  # the same file, private: read


@pytest.mark.parametrize("value", ["http://node.example:8443", "http://10.0.0.5:8443"])
def test_a_plain_http_url_to_another_host_is_refused(value: str) -> None:
    """The CLI sends its key to DONJON_URL: in clear only to loopback (a --unsafe-http node)."""
    with pytest.raises(ConfigError, match=r"DONJON_URL: .*in clear"):
        _load(DONJON_URL=value)


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:8443", "http://localhost:8443", "http://[::1]:1"]
)
def test_a_plain_http_url_to_loopback_is_read(value: str) -> None:
    """A node on this host served with --unsafe-http is still reachable."""
    assert _load(DONJON_URL=value).url == value


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
@pytest.mark.parametrize(
    ("variable", "name"), [("DONJON_CONFIG_FILE", "config.toml"), ("DONJON_ENV_FILE", "x.env")]
)
def test_a_settings_file_another_user_owns_is_refused(
    tmp_path: Path, variable: str, name: str
) -> None:
    """A settings file another user owns (0644: writable by that user alone) is theirs to
    change: its DONJON_URL could send the CLI's API key to them. Refused, naming its owner."""
    path = tmp_path / name
    path.write_text('url = "https://node.example"\n' if name.endswith(".toml") else "")
    path.chmod(0o644)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        _load(**{variable: str(path)})
