"""DONJON_DATABASE_URL (config_urls.py): read, normalised, checked, its password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.config import ConfigError, load_settings


def test_unset_is_the_data_dirs_sqlite_file(tmp_path: Path) -> None:
    settings = load_settings({"DONJON_DATA_DIR": str(tmp_path)})
    assert settings.database is None
    assert settings.database_url == f"sqlite:///{tmp_path / 'donjon.db'}"
    assert settings.sqlite_path == tmp_path / "donjon.db"
    assert not settings.initialised
    (tmp_path / "donjon.db").touch()
    assert settings.initialised


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://dj:pw@db.internal:5433/donjon", "postgresql+psycopg://dj:pw@db.internal:5433/donjon"),
        ("postgres://dj@10.0.0.7/donjon", "postgresql+psycopg://dj@10.0.0.7/donjon"),
        ("postgresql+psycopg://dj@[::1]/donjon?sslmode=require", "postgresql+psycopg://dj@[::1]/donjon?sslmode=require"),
        ("  sqlite:////var/lib/donjon/state.db ", "sqlite:////var/lib/donjon/state.db"),
    ],
)  # fmt: skip
def test_a_database_url_is_normalised_to_the_installed_driver(given: str, used: str) -> None:
    settings = load_settings({"DONJON_DATA_DIR": "/tmp/x", "DONJON_DATABASE_URL": given})
    assert settings.database_url == used


def test_a_server_database_is_initialised_when_init_made_the_data_dirs_signing_key(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {"DONJON_DATA_DIR": str(tmp_path), "DONJON_DATABASE_URL": "postgresql://dj@h/db"}
    )
    assert settings.sqlite_path is None
    assert not settings.initialised
    settings.audit_signing_key_path.touch()
    assert settings.initialised


def test_the_password_is_never_shown() -> None:
    settings = load_settings(
        {"DONJON_DATA_DIR": "/tmp/x", "DONJON_DATABASE_URL": "postgresql://dj:s3cr3t-pw@h:5432/db"}
    )
    assert "s3cr3t-pw" not in repr(settings)
    assert settings.database_shown == "postgresql+psycopg://***@h:5432/db"
    assert "s3cr3t-pw" in settings.database_url  # what the engine is given


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("mysql://dj:pw@h/db", "must be postgresql://"),
        ("postgresql+psycopg2://dj:pw@h/db", "must be postgresql://"),
        ("postgresql://dj:pw@h", "must name a host and a database"),
        ("postgresql:///db?host=/run/pw", "must name a host and a database"),
        ("sqlite://", "sqlite:////ABSOLUTE/PATH"),
        ("sqlite:///:memory:", "sqlite:////ABSOLUTE/PATH"),
        ("sqlite:///relative/pw.db", "sqlite:////ABSOLUTE/PATH"),
        ("sqlite:////abs/pw.db?mode=memory", "sqlite:////ABSOLUTE/PATH"),
        ("postgresql://dj:pw@h:99999/db", "is not a URL"),
    ],
)
def test_a_malformed_database_url_is_refused_without_echoing_it(bad: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"DONJON_DATA_DIR": "/tmp/x", "DONJON_DATABASE_URL": bad})
    assert "DONJON_DATABASE_URL: " in info.value.message
    assert needle in info.value.message
    assert repr(bad) not in info.value.message and "pw" not in info.value.message
    assert "(got '...')" in info.value.message


def test_a_database_url_sqlalchemy_refuses_is_not_echoed_with_its_password(
    tmp_path: Path,
) -> None:
    """A URL the checks pass and SQLAlchemy refuses as it makes the engine (a `plugin` it
    cannot load): `connect`'s error printed the URL whole, password included."""
    from harness import donjon_env, run_cli

    url = "postgresql://dj:Pw1Secret@db.internal/donjon?plugin=absent"
    env = {**donjon_env(tmp_path / "node"), "DONJON_DATABASE_URL": url}
    done = run_cli(env, "init", check=False)
    assert done.returncode != 0, done.stdout
    assert "cannot open database" in done.stderr, done.stderr
    assert "postgresql+psycopg://***@db.internal/donjon" in done.stderr, done.stderr
    assert "Pw1Secret" not in done.stdout + done.stderr
    assert not (tmp_path / "node" / "master.key").exists()
