"""Fixtures for the vault's unit tests: a real SQLite file, real keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from donjon.store import SecretStore, connect, create_schema
from donjon.vault import MasterKey
from donjon.vault.keyring import Keyring

PROVIDER = Path(__file__).parent / "kms_provider.py"


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    return SecretStore(engine)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    master = MasterKey.create(tmp_path / "master.key")
    return Keyring(master, tmp_path / "vault.key")


def kms_argv(tmp_path: Path, *mode: str) -> tuple[str, ...]:
    return (sys.executable, str(PROVIDER), str(tmp_path / "kms.key"), *mode)
