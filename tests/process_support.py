"""Ending the test servers (Redis, PostgreSQL, moto) the tests start on loopback."""

from __future__ import annotations

import subprocess
from typing import IO


def end_server(proc: subprocess.Popen[bytes] | None, log: IO[bytes] | None, grace_s: float) -> None:
    """Stop `proc` (SIGTERM, then SIGKILL after `grace_s`) if it runs, and close its log."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()
