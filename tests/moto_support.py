"""A real S3 + SQS API for tests: moto's server mode on a free loopback port.

`MotoServer` starts `moto_server` (installed with the dev dependencies, from PyPI),
waits until it answers, and stops it; `moto_server` is the fixture. Clients made
by `client(service)` use its endpoint, region us-east-1 and moto's account.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from harness import free_port
from process_support import end_server

__all__ = ["REGION", "MotoServer", "moto_server"]

REGION = "us-east-1"
#: Any non-empty pair: moto takes every credential.
ACCESS_KEY_ID = "AKIDDONJONTEST"
SECRET_ACCESS_KEY = "donjon-test-secret-access-key"


class MotoServer:
    """One moto_server process on 127.0.0.1:`port`, its output in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str) -> Any:
        """A boto3 client of `service` against this server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def queue_settings(self, url: str) -> str:
        """An sqs trigger's secret (JSON) for this server's queue at `url`."""
        return json.dumps(
            {
                "queue_url": url,
                "region": REGION,
                "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_ACCESS_KEY,
                "endpoint_url": self.url,
            }
        )

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers."""
        binary = Path(sys.executable).parent / "moto_server"
        self._log = open(self.directory / "moto.log", "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    "moto_server exited at start:\n" + (self.directory / "moto.log").read_text()
                )
            try:
                if httpx.get(f"{self.url}/moto-api/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"moto_server on port {self.port} did not answer")

    def stop(self) -> None:
        end_server(self.proc, self._log, 15)
        self._log = None


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[MotoServer]:
    """A running moto server of this test's own (stopped after it)."""
    server = MotoServer(tmp_path / "moto")
    server.start()
    try:
        yield server
    finally:
        server.stop()
