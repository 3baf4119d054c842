"""A real PostgreSQL for tests: Debian's server, initialised in a temp dir, on a free
loopback port.

`PostgresServer` runs initdb and starts `postgres` (as `nobody` when the tests
run as root: the server refuses to run as root), waits until it takes a
connection, and stops it (and its files). `postgres_server` is the fixture.
Without PostgreSQL the tests are skipped with the reason, except under CI (CI
set), where they fail: CI runs scripts/setup.sh, which installs it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from harness import free_port
from process_support import end_server

__all__ = ["PostgresServer", "postgres_bin", "postgres_server"]


def postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server binaries (the newest installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if not found:
        reason = "PostgreSQL is not installed (scripts/setup.sh installs Debian's)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return Path(found[-1]).parent


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


class PostgresServer:
    """One postgres on 127.0.0.1:`port`, trusting loopback, its cluster in a temp dir."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        # Not under pytest's tmp_path: its parents are root's 0700 dirs, out of nobody's reach.
        self.directory = Path(tempfile.mkdtemp(prefix="donjon-pg-"))
        self.data = self.directory / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.directory, nobody.pw_uid, nobody.pw_gid)
            self._user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?connect_timeout=5"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database (psycopg 3)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of the test's own (autocommit), to NOTIFY and look around."""
        return psycopg.connect(self.dsn(), autocommit=True)

    def start(self) -> None:
        """initdb (once), start the server and wait (bounded) until it takes a connection."""
        if not self.data.exists():
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                check=True, capture_output=True, cwd=self.directory, timeout=120, **self._user,
            )  # fmt: skip
        self._log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "fsync=off", "-c", "max_connections=30"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.directory, **self._user,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    "postgres exited at start:\n" + (self.directory / "postgres.log").read_text()
                )
            try:
                with self.connect() as conn:
                    conn.execute("SELECT 1")
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"postgres on port {self.port} did not take a connection")

    def restart(self) -> None:
        """Stop the server (a fast shutdown: SIGINT, its sessions ended) and start it again,
        on its files and port, as `pg_ctl restart -m fast` does."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
        end_server(self.proc, self._log, 30)
        self._log = None
        self.start()

    def stop(self) -> None:
        """Stop the server (a fast shutdown) and remove its files."""
        end_server(self.proc, self._log, 30)
        self._log = None
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL of this test's own (stopped and removed after it)."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
