"""A real PostgreSQL for tests: Debian's server (initdb, postgres) on a free loopback port,
in a directory of its own, run as an unprivileged user when the tests run as root
(PostgreSQL refuses to run as root). Skipped with the reason when it is not installed,
except under CI (CI set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import pytest

from harness import free_port

__all__ = ["PostgresServer"]

#: The user the server runs as when the tests run as root.
_NOBODY = 65534


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if found is None:
        reason = f"{name} is not installed (Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return found


class PostgresServer:
    """One postgres on 127.0.0.1:`port` (trust auth, user `postgres`), stopped by `stop`."""

    def __init__(self) -> None:
        self.initdb = _binary("initdb")
        self.postgres = _binary("postgres")
        # Its own directory outside pytest's (0700 root) tree, owned by the server's user.
        self.directory = Path(tempfile.mkdtemp(prefix="donjon-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            os.chown(self.directory, _NOBODY, _NOBODY)
            self._as = ["setpriv", f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        data = self.directory / "data"
        subprocess.run(
            [
                *self._as,
                self.initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._log = open(self.directory.parent / f"{self.directory.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *self._as,
                self.postgres,
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.directory),
                "-c",
                "fsync=off",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("postgres exited at start")
            ready = subprocess.run(
                [_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("postgres did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)
