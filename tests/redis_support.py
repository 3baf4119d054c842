"""A real Redis for tests: Debian's redis-server on a free loopback port, in a temp dir.

`RedisServer` starts one (no persistence, its own directory), waits until it
answers PING, and can be killed and started again on the same port (an outage).
`redis_server` is the fixture. Without redis-server the tests are skipped with
the reason, except under CI (CI set), where they fail: CI runs scripts/setup.sh,
which installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
import redis

from harness import LiveNode, free_port, start_node
from process_support import end_server

__all__ = ["RedisServer", "redis_binary", "redis_server", "two_nodes"]


def redis_binary() -> str:
    """The redis-server binary; skip (or fail under CI) when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        reason = "redis-server is not installed (scripts/setup.sh installs Debian's)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the Redis tests")
        pytest.skip(reason)
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, its files under `directory`."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = redis_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        self._log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    "redis-server exited at start:\n" + (self.directory / "redis.log").read_text()
                )
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        """End the server at once (SIGKILL): an outage, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        end_server(self.proc, self._log, 15)
        self._log = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running Redis of this test's own (stopped after it)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def two_nodes(
    factory: pytest.TempPathFactory, env: dict[str, str], *, fresh: bool = True
) -> Iterator[tuple[LiveNode, LiveNode]]:
    """Two nodes with data dirs of their own and `env` (DONJON_REDIS_URL), as a load
    balancer's peers; both stopped after. `fresh`: the second with admin keys of its own
    (each node's admin its own caller: a per-caller bucket must not pass for a shared one)."""
    a = start_node(factory.mktemp("node-a"), env)
    try:
        b = start_node(factory.mktemp("node-b"), env, fresh=fresh)
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
