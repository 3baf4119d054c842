"""The advisory watch's tables (store/vulnerabilities.py): SQLite, and PostgreSQL shared
by several nodes, where the database decides which node reports a finding."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.store import Engine, VersionFinding, VulnerabilityStore, connect, create_schema
from postgres_support import PostgresServer

FINDING = VersionFinding("resize", 2, "leftpad", "1.0", "GHSA-1", ("CVE-1",), ("1.1",))


def _sqlite(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'v.db'}")
    create_schema(engine)
    return engine


def test_a_finding_is_opened_once_then_cleared_once_then_opened_again(tmp_path: Path) -> None:
    """Opening an open finding, or clearing a cleared one, reports that nothing changed;
    a cleared finding the data covers again is opened anew."""
    store = VulnerabilityStore(_sqlite(tmp_path))
    assert store.open_finding(FINDING) is True
    assert store.open_finding(FINDING) is False
    assert store.open_findings(["resize"]) == [FINDING]
    assert store.clear_finding(FINDING) is True
    assert store.clear_finding(FINDING) is False
    assert store.open_findings() == []
    assert store.open_finding(FINDING) is True
    assert store.open_findings(["other"]) == []


def test_checked_versions_and_the_last_digest_are_kept(tmp_path: Path) -> None:
    """Versions checked and the data's digest outlive the store object (a restart)."""
    engine = _sqlite(tmp_path)
    store = VulnerabilityStore(engine)
    assert store.last_digest() is None
    store.mark_checked([("resize", 1), ("resize", 2)])
    store.mark_checked([("resize", 2)])
    store.save_digest("a" * 64)
    store.save_digest("b" * 64)
    again = VulnerabilityStore(engine)
    assert again.checked([("resize", 2), ("resize", 3), ("other", 1)]) == {("resize", 2)}
    assert again.last_digest() == "b" * 64


@pytest.fixture(scope="module")
def shared_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _race(stores: list[VulnerabilityStore], act: Callable[[VulnerabilityStore], bool]) -> int:
    with ThreadPoolExecutor(len(stores)) as pool:
        return sum(pool.map(act, stores))


@pytest.mark.slow
def test_nodes_sharing_postgres_open_and_clear_each_finding_once(
    shared_postgres: PostgresServer,
) -> None:
    """Four nodes (engines) on one PostgreSQL open the same finding at once: one wins;
    they claim its record at once: one wins; they clear it at once: one wins; the data
    covers it again: one reopens it."""
    engines = [connect(shared_postgres.url) for _ in range(4)]
    try:
        create_schema(engines[0])
        stores = [VulnerabilityStore(e) for e in engines]
        for n in range(5):
            finding = VersionFinding("resize", n + 1, "leftpad", "1.0", f"GHSA-{n}")
            assert (
                _race(stores, functools.partial(VulnerabilityStore.open_finding, finding=finding))
                == 1
            )
            assert (
                _race(stores, functools.partial(VulnerabilityStore.claim_report, finding=finding))
                == 1
            )
            assert (
                _race(stores, functools.partial(VulnerabilityStore.clear_finding, finding=finding))
                == 1
            )
            assert (
                _race(stores, functools.partial(VulnerabilityStore.open_finding, finding=finding))
                == 1
            )
        assert len(stores[0].open_findings(["resize"])) == 5
        stores[1].save_digest("c" * 64)
        assert stores[2].last_digest() == "c" * 64
    finally:
        for engine in engines:
            engine.dispose()


def test_a_finding_waits_in_the_outbox_until_a_claim_holds(tmp_path: Path) -> None:
    """An opened finding is unreported until claimed; one claim wins; a released claim
    (its record failed) puts it back; a finding opened as reported never waits."""
    store = VulnerabilityStore(_sqlite(tmp_path))
    store.open_finding(FINDING)
    assert store.unreported() == [FINDING]
    assert store.claim_report(FINDING) is True
    assert store.claim_report(FINDING) is False
    assert store.unreported() == []
    store.release_report(FINDING)
    assert store.unreported() == [FINDING]
    assert store.claim_report(FINDING) is True
    known = VersionFinding("resize", 3, "leftpad", "1.0", "GHSA-1")
    store.open_finding(known, reported=True)
    assert store.unreported() == []
    store.clear_finding(FINDING)
    store.open_finding(FINDING)  # covered again: reported again
    assert store.unreported() == [FINDING]


def test_findings_open_before_the_outbox_are_not_reported_again(tmp_path: Path) -> None:
    """A data dir from before `reported_at`: the column is added at start, and the
    findings already open (their records written then) do not wait in the outbox."""
    engine = _sqlite(tmp_path)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE advisory_findings DROP COLUMN reported_at"))
        conn.execute(
            text(
                "INSERT INTO advisory_findings VALUES ('resize', 2, 'leftpad', 'GHSA-1', '1.0',"
                " '[]', '[]', 'high', '', 1.0, NULL)"
            )
        )
    create_schema(engine)
    store = VulnerabilityStore(engine)
    assert [f.advisory for f in store.open_findings()] == ["GHSA-1"]
    assert store.unreported() == []
