"""Starting an audit writer process (audit/writer.py) and its handshake.

The child gets its end of a socketpair as an inherited descriptor (its number
is the only argument) and its configuration and keys in the first frame; it
answers READY with the log's size once it has opened the log, or ERROR.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess  # nosec B404  (our own interpreter, fixed argv, no shell)
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from donjon.audit.errors import AuditError
from donjon.audit.wire import ERROR, INIT, READY, SIZE, frame, read_frame
from donjon.config import AuditSettings
from donjon.secret import Secret

__all__ = ["Spawned", "WriterConfig", "reap", "spawn"]

log_ = logging.getLogger("donjon.audit")

#: The process, the node's end of its socket (non-blocking), the log's size.
Spawned = tuple["subprocess.Popen[bytes]", socket.socket, int]


@dataclass(frozen=True)
class WriterConfig:
    """What the writer process needs to open the log (sent over the socketpair)."""

    database_url: str
    seed: Secret[bytes]
    log_kek: Secret[bytes] | None
    settings: AuditSettings
    checkpoint_file: Path | None

    def body(self) -> bytes:
        kek = self.log_kek
        return json.dumps(
            {
                "database_url": self.database_url,
                "seed": self.seed.reveal().hex(),
                "log_kek": None if kek is None else kek.reveal().hex(),
                "settings": asdict(self.settings),
                "checkpoint_file": None
                if self.checkpoint_file is None
                else str(self.checkpoint_file),
            }
        ).encode()


def spawn(config: WriterConfig, timeout: float) -> Spawned:
    """A new writer, past its handshake (blocking: runs at start or in a thread)."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(  # nosec B603  (sys.executable, fixed arguments)
            [sys.executable, "-m", "donjon.audit.writer", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
    finally:
        theirs.close()
    try:
        ours.settimeout(timeout)
        ours.sendall(frame(INIT, config.body()))
        kind, body = read_frame(ours)
        if kind == ERROR:
            raise AuditError(
                f"the audit writer could not open the log: {body.decode(errors='replace')}",
                hint="the server log says more",
            )
        if kind != READY:
            raise AuditError(
                f"the audit writer answered its start with frame kind {kind}",
                hint="the writer and the node are one installation: reinstall Donjon",
            )
    except BaseException:
        ours.close()
        reap(proc, 10.0)
        raise
    ours.setblocking(False)
    return proc, ours, SIZE.unpack(body)[0]


def reap(proc: subprocess.Popen[Any], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log_.error("the audit writer (pid %d) did not exit: killed", proc.pid)
        proc.kill()
        proc.wait()
