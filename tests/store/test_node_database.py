"""A node on a database of its own (DONJON_DATABASE_URL): real PostgreSQL, and a SQLite file
outside the data dir; in each, one data dir and one node hold the database.

The state lives in the database named (nothing in the data dir's SQLite file), survives a
restart, and its audit log verifies. Another data dir's `donjon init` against it is refused
before it makes anything (its keys would not open the vault nor continue the log), and a
copy of the data dir served beside the node is refused by the database's own lock (two
audit writers on one log), while the node serves on. Several nodes sharing a database
are not supported yet: these are the refusals that keep it from being half-done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from donjon.store import FunctionStore, connect, create_schema
from harness import EXAMPLES, LiveNode, donjon_env, refused_serve, run_cli, serve_initialised
from postgres_support import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture, used by name

pytestmark = pytest.mark.slow  # nodes of their own, and a PostgreSQL


def _init(data_dir: Path, database: str) -> str:
    done = run_cli({**donjon_env(data_dir), "DONJON_DATABASE_URL": database}, "init", "--json")
    return str(json.loads(done.stdout)["admin_key"])


def _greets(node: LiveNode, name: str) -> None:
    answer = node.invoke("hello", {"name": name})
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == f"hello, {name}"


def _refused_init(data_dir: Path, database: str) -> None:
    env = {**donjon_env(data_dir), "DONJON_DATABASE_URL": database}
    done = run_cli(env, "init", check=False)
    assert done.returncode != 0, done.stdout
    assert "already holds another data dir's node" in done.stderr, done.stderr
    assert not (data_dir / "master.key").exists()
    assert not (data_dir / "audit-signing.key").exists()


def test_a_node_keeps_its_state_in_postgresql_and_holds_it_alone(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    own = tmp_path / "own"
    node = serve_initialised(own, _init(own, database), {"DONJON_DATABASE_URL": database})
    try:
        assert not (own / "donjon.db").exists()
        node.deploy(EXAMPLES / "hello")
        _greets(node, "postgres")
        with postgres_server.connect() as conn:
            assert conn.execute("SELECT name, version FROM functions").fetchall() == [("hello", 1)]
            counted = conn.execute("SELECT count(*) FROM audit_log").fetchone()
            assert counted is not None and counted[0] > 3
        _refused_init(tmp_path / "other", database)
        copy = tmp_path / "copy"
        shutil.copytree(own, copy)
        said = refused_serve(copy, {"DONJON_DATABASE_URL": database})
        assert "is already served by another donjon node" in said, said
        _greets(node, "still")
        env = {**node.env(), "DONJON_DATABASE_URL": database}
        doctor = run_cli(env, "doctor", "--output", "json", check=False)
        shown = f"postgresql+psycopg://***@127.0.0.1:{postgres_server.port}/postgres"
        assert json.loads(doctor.stdout)["database"] == shown
        # The data dir names its database: a command that forgets DONJON_DATABASE_URL is
        # refused before it makes a second, empty node on the data dir's own SQLite file.
        assert (own / "database").read_text() == shown + "\n"
        forgot = run_cli(donjon_env(own), "init", check=False)
        assert forgot.returncode != 0 and f"keeps its state in {shown}" in forgot.stderr
        said = refused_serve(copy)
        assert f"keeps its state in {shown}" in said, said
        assert not (own / "donjon.db").exists() and not (copy / "donjon.db").exists()
        node.stop()
        node.serve_again({"DONJON_DATABASE_URL": database})
        _greets(node, "restarted")  # the registry came back from PostgreSQL
    finally:
        node.stop()
    verified = run_cli(env, "audit", "verify")
    assert "audit log intact" in verified.stdout


def test_a_sqlite_file_outside_the_data_dir_is_held_by_one_node(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shared' / 'state.db'}"
    (tmp_path / "shared").mkdir()
    own = tmp_path / "own"
    node = serve_initialised(own, _init(own, database), {"DONJON_DATABASE_URL": database})
    try:
        node.deploy(EXAMPLES / "hello")
        _greets(node, "file")
        assert not (own / "donjon.db").exists()
        assert (tmp_path / "shared" / "state.db").stat().st_mode & 0o777 == 0o600
        _refused_init(tmp_path / "other", database)
        copy = tmp_path / "copy"
        shutil.copytree(own, copy)
        said = refused_serve(copy, {"DONJON_DATABASE_URL": database})
        assert f"the database {tmp_path / 'shared' / 'state.db'} is already served" in said, said
        _greets(node, "still")
    finally:
        node.stop()


def test_the_longest_label_a_jwt_gives_is_stored_on_postgresql(
    postgres_server: PostgresServer,
) -> None:
    """`jwt:<issuer>:<sub>` reaches 4 + 64 + 1 + 256 characters; PostgreSQL enforces a
    VARCHAR's width (at 64 the deploy of such a caller failed with a DataError)."""
    label = "jwt:" + "i" * 64 + ":" + "s" * 256
    engine = connect(postgres_server.url)
    try:
        create_schema(engine)
        store = FunctionStore(engine)
        store.add_version("f", 1, "0" * 64, "{}", label)
        assert store.owned_versions("f", label) == ((1, None),)
    finally:
        engine.dispose()


def test_audit_verify_of_a_database_that_does_not_answer_is_one_clear_line(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Before: a 70-line traceback of psycopg's OperationalError (the password not in it)."""
    database = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    _init(tmp_path / "node", database)
    absent = f"postgresql://postgres:Pw1Secret@127.0.0.1:{postgres_server.port}/absent"
    env = {**donjon_env(tmp_path / "node"), "DONJON_DATABASE_URL": absent}
    done = run_cli(env, "audit", "verify", check=False)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: cannot read the database postgresql+psycopg://***@")
    assert 'database "absent" does not exist' in done.stderr, done.stderr
    assert "Pw1Secret" not in done.stdout + done.stderr
