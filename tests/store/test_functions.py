"""Function versions: stored in one transaction that rolls back on any failure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.secret import Secret
from donjon.store import FunctionRecord, FunctionStore, connect, create_schema
from donjon.store.database import StoreError
from postgres_support import PostgresServer


def _store(tmp_path: Path) -> FunctionStore:
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    return FunctionStore(engine)


def test_check_sees_the_stored_row(tmp_path: Path) -> None:
    """The check is given the row as the database holds it, and the version becomes current."""
    store = _store(tmp_path)
    seen: list[FunctionRecord] = []
    record = store.add_version("f", 1, "0" * 64, '{"name": "f"}', "tester", check=seen.append)
    assert seen == [record]
    assert [r.version for r in store.current()] == [1]


def test_a_failing_check_stores_nothing(tmp_path: Path) -> None:
    """When the check raises, the version and the current pointer are rolled back."""
    store = _store(tmp_path)
    store.add_version("f", 1, "0" * 64, "{}", "tester")

    def refuse(_: FunctionRecord) -> None:
        raise StoreError("no")

    with pytest.raises(StoreError):
        store.add_version("f", 2, "1" * 64, "{}", "tester", check=refuse)
    assert [(r.version, r.digest) for r in store.current()] == [(1, "0" * 64)]
    assert store.next_version("f") == 2


def test_each_owner_has_the_runs_of_versions_it_deployed_between_removals(
    tmp_path: Path,
) -> None:
    """A deploys 1-2 and removes; B deploys 3-4; A's runs are [1, 2] and B's [3, ...); once
    B removes, [3, 4]; A again deploys 5: A has [1, 2] and [5, ...). Another admin's
    version of B's function (B still its owner) stays in B's run."""
    store = _store(tmp_path)
    store.add_version("f", 1, "1" * 64, "{}", "key:a")
    store.add_version("f", 2, "2" * 64, "{}", "key:a")
    assert store.owned_versions("f", "key:a") == ((1, None),)
    assert store.remove("f")
    assert store.owned_versions("f", "key:a") == ((1, 2),)
    store.add_version("f", 3, "3" * 64, "{}", "key:b")
    store.add_version("f", 4, "4" * 64, "{}", "key:admin")
    assert store.owned_versions("f", "key:b") == ((3, None),)
    assert store.owned_versions("f", "key:admin") == ()
    assert store.owned_versions("f", "key:a") == ((1, 2),)
    assert store.remove("f")
    assert store.owned_versions("f", "key:b") == ((3, 4),)
    store.add_version("f", 5, "5" * 64, "{}", "key:a")
    assert store.owned_versions("f", "key:a") == (
        (1, 2),
        (5, None),
    )
    assert store.owned_versions("g", "key:a") == ()
    assert not store.remove("g")


def test_a_function_deployed_before_runs_were_kept_is_its_owners_from_version_one(
    tmp_path: Path,
) -> None:
    """No run recorded (a data dir from before): the deployed function's owner has every
    version, as before; removing it records that run, and a new owner's starts after it."""
    store = _store(tmp_path)
    store.add_version("old", 1, "1" * 64, "{}", "key:a")
    store.add_version("old", 2, "2" * 64, "{}", "key:a")
    with store._engine.begin() as conn:
        conn.execute(text("DELETE FROM function_owners"))
    assert store.owned_versions("old", "key:a") == ((1, None),)
    assert store.owned_versions("old", "key:b") == ()
    assert store.remove("old")
    assert store.owned_versions("old", "key:a") == ((1, 2),)
    store.add_version("old", 3, "3" * 64, "{}", "key:b")
    assert store.owned_versions("old", "key:b") == ((3, None),)
    assert store.owned_versions("old", "key:a") == ((1, 2),)


def test_an_unrecorded_run_starts_after_the_last_recorded_one(tmp_path: Path) -> None:
    """A current function with no open run, behind a recorded run of another owner: its
    owner's run starts after that one, never at version 1 (the other owner's)."""
    store = _store(tmp_path)
    store.add_version("f", 1, "1" * 64, "{}", "key:a")
    assert store.remove("f")
    store.add_version("f", 2, "2" * 64, "{}", "key:b")
    with store._engine.begin() as conn:
        conn.execute(text("DELETE FROM function_owners WHERE last_version IS NULL"))
    assert store.owned_versions("f", "key:b") == ((2, None),)
    assert store.remove("f")
    assert store.owned_versions("f", "key:b") == ((2, 2),)
    assert store.owned_versions("f", "key:a") == ((1, 1),)


def test_a_record_names_the_first_version_of_its_owners_run(tmp_path: Path) -> None:
    """`since_version`: 1 for the first run; a new version of it keeps it; after a
    removal the next deploy's run starts at its own version."""
    store = _store(tmp_path)
    assert store.add_version("f", 1, "1" * 64, "{}", "key:a").since_version == 1
    assert store.add_version("f", 2, "2" * 64, "{}", "key:admin").since_version == 1
    assert store.remove("f")
    assert store.add_version("f", 3, "3" * 64, "{}", "key:b").since_version == 3
    assert [(r.version, r.owner, r.since_version) for r in store.current()] == [(3, "key:b", 3)]


def test_a_run_left_open_by_an_older_release_is_closed_and_read_as_ended(
    tmp_path: Path,
) -> None:
    """A removal an older release made deletes the function's row and leaves A's run
    open. A deploy that follows closes it before its own run; and while B's deploy by an
    older release left no run of B's, A's ends before B's first version, not never."""
    store = _store(tmp_path)
    store.add_version("f", 1, "1" * 64, "{}", "key:a")
    store.add_version("f", 2, "2" * 64, "{}", "key:a")
    with store._engine.begin() as conn:  # removed by an older release
        conn.execute(text("DELETE FROM functions WHERE name = 'f'"))
    assert store.owned_versions("f", "key:a") == ((1, 2),)
    store.add_version("f", 3, "3" * 64, "{}", "key:b")
    assert store.owned_versions("f", "key:a") == ((1, 2),)
    assert store.owned_versions("f", "key:b") == ((3, None),)
    # Removed and deployed again by an older release: no run of C's, C's version 5.
    with store._engine.begin() as conn:
        conn.execute(text("DELETE FROM functions WHERE name = 'f'"))
        conn.execute(text("UPDATE function_owners SET last_version = NULL WHERE first_version = 3"))
    store.add_version("f", 4, "4" * 64, "{}", "key:b")  # B's, then removed again by old code
    with store._engine.begin() as conn:
        conn.execute(text("DELETE FROM functions WHERE name = 'f'"))
        conn.execute(text("DELETE FROM function_owners WHERE first_version = 4"))
        conn.execute(text("UPDATE function_owners SET last_version = NULL WHERE first_version = 3"))
        conn.execute(
            text(
                "INSERT INTO function_versions (name, version, digest, manifest, created_at,"
                " created_by) VALUES ('f', 5, :d, '{}', 0, 'key:c')"
            ),
            {"d": "5" * 64},
        )
        conn.execute(text("INSERT INTO functions (name, version, owner) VALUES ('f', 5, 'key:c')"))
    assert store.owned_versions("f", "key:b") == ((3, 4),)
    assert store.owned_versions("f", "key:c") == ((5, None),)
    assert store.owned_versions("f", "key:a") == ((1, 2),)


def _kept_digests_cases(store: FunctionStore) -> None:
    """f: versions 1-4 (4 runs v1's tree again); g: 1-2; h: removed. With two kept: f's
    3 and 4 (4's tree is v1's), g's both, none of h's."""
    for version, digest in enumerate(["a", "b", "c", "a"], start=1):
        store.add_version("f", version, digest * 64, "{}", "key:a")
    for version, digest in enumerate(["d", "e"], start=1):
        store.add_version("g", version, digest * 64, "{}", "key:a")
    store.add_version("h", 1, "f" * 64, "{}", "key:a")
    assert store.remove("h")
    assert store.kept_digests(2) == {"c" * 64, "a" * 64, "d" * 64, "e" * 64}
    assert store.kept_digests(1) == {"a" * 64, "e" * 64}


def test_kept_digests_are_the_newest_versions_of_deployed_functions(tmp_path: Path) -> None:
    """lifecycle/bundle_prune.py keeps these trees: each deployed function's newest."""
    _kept_digests_cases(_store(tmp_path))


@pytest.mark.slow
def test_kept_digests_on_postgresql() -> None:
    """The same query (a window function) on PostgreSQL."""
    server = PostgresServer()
    server.start()
    try:
        engine = connect(server.url)
        create_schema(engine)
        try:
            _kept_digests_cases(FunctionStore(engine))
        finally:
            engine.dispose()
    finally:
        server.stop()


def test_rows_carry_a_mac_of_what_is_served_and_old_rows_are_sealed(tmp_path: Path) -> None:
    """With a MAC key, a stored row is authentic; any change to its digest, manifest or
    deployer is not; a row without a MAC (from before them) is not, until sealed."""
    engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(engine)
    FunctionStore(engine).add_version("old", 1, "a" * 64, "{}", "key:a")  # no MAC
    store = FunctionStore(engine, Secret(b"k" * 32))
    store.add_version("f", 1, "0" * 64, '{"name": "f"}', "key:a")
    (f,) = [r for r in store.current() if r.name == "f"]
    assert store.authentic(f)
    for changed in (
        dataclasses.replace(f, digest="1" * 64),
        dataclasses.replace(f, manifest="{}"),
        dataclasses.replace(f, created_by="key:b"),
        dataclasses.replace(f, owner="key:b"),
        dataclasses.replace(f, pointer_mac=None),
    ):
        assert not store.authentic(changed)
    (old,) = [r for r in store.current() if r.name == "old"]
    assert not store.authentic(old)
    assert store.seal_unsealed(versions=False) == 1  # its functions row alone
    assert not store.authentic(next(r for r in store.current() if r.name == "old"))
    assert store.seal_unsealed() == 1  # its version row
    assert all(store.authentic(r) for r in store.current())
    assert not FunctionStore(engine, Secret(b"x" * 32)).authentic(f)
