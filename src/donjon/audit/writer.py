"""The audit writer process: `python -m donjon.audit.writer FD` (the node starts it).

FD is its end of a socketpair (audit/remote.py, frames of audit/wire.py). It
reads its configuration and keys from the first frame, opens the log as the
node does (its own engine from the node's database URL; the tree rebuilt from
the stored leaf hashes and checked against the signed head; the checkpoint
file's newest line checked against the database), checkpoints, says READY,
then appends in two stages (audit/pipeline.py): this thread reads every
RECORDS frame waiting on the socket and prepares those records (seqs, hashes,
the tree) while the transaction before them commits; the commit thread takes
everything prepared meanwhile into one transaction (group commit), commits it,
answers COMMITTED, and only then publishes a checkpoint made with it. A small
run met by an idle commit thread is committed by this thread itself, without the
hand-off (audit/pipeline.py says when). It
checkpoints by time between records too. It ends when the socket closes (after committing
what it received and checkpointing) or when its parent is gone; SIGINT and
SIGTERM are the node's to handle, so it ignores them.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from donjon.audit.checkpoint import SigningKey
from donjon.audit.errors import AuditError
from donjon.audit.log import AuditLog
from donjon.audit.opening import check_file_tail, sinks_for
from donjon.audit.pipeline import Pipeline
from donjon.audit.wire import (
    ERROR,
    INIT,
    READY,
    RECORDS,
    SIZE,
    FrameReader,
    frame,
    read_frame,
)
from donjon.config import AuditSettings
from donjon.errors import Error
from donjon.private_memory import keep_memory_private
from donjon.secret import Secret
from donjon.store import connect
from donjon.vault.logseal import LogSealer

__all__ = ["MAX_BATCH", "main"]

log_ = logging.getLogger("donjon.audit.writer")

#: Records in one transaction, at most.
MAX_BATCH = 8192
#: Bytes read from the node at most per `recv`. A unix stream socket's read takes all
#: that waits, up to this: after a shorter one the next would fail EAGAIN, and what
#: comes meanwhile is read after the next poll, as it would be after that failure.
_RECV = 1 << 20
#: Seconds between looks at whether the parent is still there.
_PARENT_CHECK_S = 1.0


def _open(config: dict[str, Any]) -> AuditLog:
    settings = AuditSettings(**config["settings"])
    key = SigningKey.from_seed(bytes.fromhex(config["seed"]))
    kek = config["log_kek"]
    sealer = None if kek is None else LogSealer.from_kek(Secret(bytes.fromhex(kek)))
    path = None if config["checkpoint_file"] is None else Path(config["checkpoint_file"])
    engine = connect(config["database_url"])
    if path is not None:
        check_file_tail(path, engine, key)
    log = AuditLog(
        engine, key, sealer, settings=settings, checkpoint_file=path, sinks=sinks_for(settings)
    )
    log.hold_connection()
    log.checkpoint()
    return log


def _serve(sock: socket.socket, log: AuditLog, parent: int) -> None:
    reader = FrameReader()
    pipeline = Pipeline(sock, log, MAX_BATCH)
    closed = False
    # poll, not select: the socket keeps the gateway's descriptor number, which may be
    # past select's 1,024 in a gateway holding many connections (gateway/open_files.py).
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        while not closed and not pipeline.gone:
            ready = poller.poll(_PARENT_CHECK_S * 1000)
            if os.getppid() != parent:
                log_.warning("the node is gone: the audit writer stops")
                return
            if not ready:
                continue
            # Everything waiting now is prepared at once; it joins the next transaction.
            entries: list[bytes] = []
            while len(entries) < MAX_BATCH:
                try:
                    data = sock.recv(_RECV, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if not data:
                    closed = True
                    break
                for kind, body in reader.feed(data):
                    if kind == RECORDS:
                        entries.extend(body.split(b"\n"))
                if len(data) < _RECV:  # the socket held no more: no read to fail EAGAIN
                    break
            if entries:
                pipeline.submit(entries)
    finally:
        pipeline.close()  # what was received is committed and answered


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    keep_memory_private()  # before the seed arrives
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s audit-writer: %(message)s"
    )
    sock = socket.socket(fileno=int(args[0]))
    parent = os.getppid()
    try:
        kind, body = read_frame(sock)
        if kind != INIT:
            raise AuditError("the audit writer's first frame is not INIT", hint="a Donjon bug")
        log = _open(json.loads(body))
    except Error as e:
        sock.sendall(frame(ERROR, f"{e.message} ({e.hint})".encode()))
        return 1
    except Exception as e:
        log_.exception("the audit writer could not start")
        sock.sendall(frame(ERROR, f"{type(e).__name__}: {e}".encode()))
        return 1
    sock.sendall(frame(READY, SIZE.pack(log.size)))
    try:
        _serve(sock, log, parent)
    except OSError as e:  # the node's end closed while answering: it is gone
        log_.warning("the audit writer's socket failed (%s): it stops", e)
    finally:
        log.stop()  # the checkpoint of what it wrote, the checkpoint file closed
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
