"""Fixtures for the scanner tests: the shared OSV snapshot, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.scan import AdvisoryDB

#: CI runs with ../shared beside the repository.
SHARED_ADVISORIES = Path(__file__).parents[2] / ".." / "shared" / "data" / "pypa-advisory-db"


@pytest.fixture(scope="session")
def shared_advisories() -> Path:
    """Where the PyPA advisory database snapshot (OSV YAML records) lives."""
    if not SHARED_ADVISORIES.is_dir():
        pytest.fail(f"the shared advisory snapshot is missing at {SHARED_ADVISORIES.resolve()}")
    return SHARED_ADVISORIES


@pytest.fixture(scope="session")
def advisory_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's cache of the parsed snapshot (`AdvisoryDB.load`'s `cache_dir`, as the
    node keeps one): whichever loads the snapshot first, here or in a scan helper, parses
    it; the others read the parsed records."""
    return tmp_path_factory.mktemp("advisory-cache")


@pytest.fixture(scope="session")
def advisory_db(shared_advisories: Path, advisory_cache: Path) -> AdvisoryDB:
    """The snapshot, loaded once for the session."""
    return AdvisoryDB.load(shared_advisories, cache_dir=advisory_cache)
