"""The advisory watch's settings: defaults, values read, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.config import AdvisoryWatchSettings, ConfigError, load_settings


def _load(**env: str) -> AdvisoryWatchSettings:
    base = {"DONJON_DATA_DIR": "/tmp/donjon-config-test"}
    return load_settings({**base, **env}).advisory_watch


def test_the_watch_looks_every_minute_and_fetches_nothing_by_default() -> None:
    """Unset: a look every 60 s, no source URL, a day between fetches."""
    assert _load() == AdvisoryWatchSettings(period_s=60.0, source_url=None, refresh_s=86_400.0)


def test_the_settings_are_read() -> None:
    """Each DONJON_ADVISORY_* setting lands in its field."""
    watch = _load(
        DONJON_ADVISORY_WATCH_S="5",
        DONJON_ADVISORY_SOURCE_URL="https://mirror.example/PyPI/all.zip",
        DONJON_ADVISORY_REFRESH_S="3600",
    )
    assert watch == AdvisoryWatchSettings(5.0, "https://mirror.example/PyPI/all.zip", 3600.0)
    assert _load(DONJON_ADVISORY_SOURCE_URL="http://127.0.0.1:8080/all.zip").source_url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DONJON_ADVISORY_SOURCE_URL", "http://mirror.example/all.zip"),
        ("DONJON_ADVISORY_SOURCE_URL", "ftp://mirror.example/all.zip"),
        ("DONJON_ADVISORY_SOURCE_URL", "https://user:pw@mirror.example/all.zip"),
        ("DONJON_ADVISORY_WATCH_S", "0"),
        ("DONJON_ADVISORY_REFRESH_S", "10"),
    ],
)
def test_a_malformed_watch_setting_is_refused(name: str, value: str) -> None:
    """Plain http off this host, another scheme, credentials, or periods out of range."""
    with pytest.raises(ConfigError, match=name):
        _load(**{name: value})


def test_a_source_url_with_an_advisories_path_is_refused(tmp_path: Path) -> None:
    """The fetched export would never be read beside DONJON_ADVISORIES: said at once."""
    with pytest.raises(ConfigError, match="DONJON_ADVISORY_SOURCE_URL is set with"):
        _load(
            DONJON_ADVISORY_SOURCE_URL="https://mirror.example/all.zip",
            DONJON_ADVISORIES=str(tmp_path),
        )
