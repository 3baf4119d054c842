"""When checkpoints are made, and the copies written outside the database.

The writer makes a checkpoint every `checkpoint_records` records or
`checkpoint_s` seconds with new records, at start and at shutdown. Each one is
a row of `audit_checkpoints` (written in the commit's transaction), then a line
of the append-only file `DATA_DIR/audit-checkpoints.jsonl`, flushed and
fsynced, then a copy to each configured sink (audit/sinks.py). The file is
written only after the database commit, so a crash leaves the file behind the
database, never ahead of it: a file ahead of the database is a rollback.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from donjon import boundedjson
from donjon.audit.checkpoint import Checkpoint, SigningKey
from donjon.audit.sinks import CheckpointSink
from donjon.config import AuditSettings

__all__ = ["CheckpointEntry", "CheckpointFile", "Checkpointer", "FileRead"]

log_ = logging.getLogger("donjon.audit")

#: How much of the file's end `CheckpointFile.last` reads to find its newest line.
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint as the table, the file and the sinks hold it."""

    size: int
    root: bytes
    ts: float
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "root": self.root.hex(), "ts": self.ts, "note": self.note}

    def line(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode() + b"\n"


@dataclass
class FileRead:
    """The file's entries (with their line numbers) and what was wrong with it."""

    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: JSON lines that are not a checkpoint entry: tampering.
    problems: list[str] = field(default_factory=list)
    #: Lines that are not JSON at all (torn by a crash, or edited): that copy is lost.
    warnings: list[str] = field(default_factory=list)
    torn_last_line: bool = False


class CheckpointFile:
    """The append-only file of checkpoints, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: CheckpointEntry) -> None:
        """Append one line and fsync it; a torn line left by a crash is closed first."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            prefix = b""
            size = os.fstat(fd).st_size
            if size:
                with self.path.open("rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        prefix = b"\n"  # end the torn line so this one stands alone
            os.write(fd, prefix + entry.line())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> FileRead:
        """Every entry. A last line without its newline (a crash mid-write) is ignored
        with a warning; so is a line that is not JSON at all (a torn line a later append
        closed, or an edit; either way that copy is lost, the database keeps its row).
        A JSON line that is not a checkpoint entry is a problem: someone wrote it."""
        result = FileRead()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return result
        lines = data.split(b"\n")
        if lines.pop():  # not b"": the file does not end with a newline
            result.torn_last_line = True
            result.warnings.append(f"the last line of {self.path.name} is incomplete: ignored")
        for number, raw in enumerate(lines, start=1):
            try:
                value = boundedjson.loads(raw)
            except boundedjson.JSONTooDeep:
                value = None  # JSON, but no entry: written by someone (a problem, below)
            except ValueError:
                result.warnings.append(
                    f"line {number} of {self.path.name} is not JSON (a torn write, or an edit)"
                )
                continue
            entry = _entry(value)
            if entry is None:
                result.problems.append(
                    f"line {number} of {self.path.name} is not a checkpoint entry: it was edited"
                )
                continue
            result.entries.append((number, entry))
        for warning in result.warnings:
            log_.warning("%s", warning)
        return result

    def last(self) -> dict[str, Any] | None:
        """The newest complete entry, reading only the file's end."""
        try:
            with self.path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                end = f.tell()
                f.seek(max(0, end - _TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            return None
        for raw in reversed(tail.split(b"\n")[:-1]):
            entry = _parse_line(raw)
            if entry is not None:
                return entry
        return None


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        return _entry(boundedjson.loads(raw))
    except (ValueError, boundedjson.JSONTooDeep):
        return None


def _entry(entry: object) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    size, root, note = entry.get("size"), entry.get("root"), entry.get("note")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    if not isinstance(root, str) or not isinstance(note, str):
        return None
    return entry


class Checkpointer:
    """The cadence, and the copies of each checkpoint outside the database."""

    def __init__(
        self,
        key: SigningKey,
        settings: AuditSettings,
        file: CheckpointFile | None = None,
        sinks: Sequence[CheckpointSink] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.settings = settings
        self.file = file
        self.sinks = list(sinks)
        self.clock = clock
        #: The newest checkpoint's size and the time it was made (set by the log at start).
        self.last_size = -1
        self.last_time = 0.0

    def due(self, size: int, now: float) -> bool:
        """Is a checkpoint of `size` records due at `now`?"""
        if size <= self.last_size:
            return False
        if size - max(self.last_size, 0) >= self.settings.checkpoint_records:
            return True
        return now - self.last_time >= self.settings.checkpoint_s

    def seconds_until_due(self, size: int, now: float) -> float | None:
        """How long until time alone makes one due (None: no new records to cover)."""
        if size <= self.last_size:
            return None
        return max(0.0, self.settings.checkpoint_s - (now - self.last_time))

    def make(self, size: int, root: bytes, now: float) -> CheckpointEntry:
        checkpoint = Checkpoint(self.key.origin, size, root, int(now * 1000))
        return CheckpointEntry(size, root, round(now, 3), self.key.sign(checkpoint))

    def committed(self, entry: CheckpointEntry) -> None:
        """After the row's commit (under the writer's lock): the cadence restarts."""
        self.last_size, self.last_time = entry.size, entry.ts

    def publish(self, entry: CheckpointEntry) -> None:
        """Then (after the callers are woken): the file, fsynced, and the sinks' queues."""
        if self.file is not None:
            try:
                self.file.append(entry)
            except OSError as e:
                log_.error(
                    "audit checkpoint %d not written to %s: %s", entry.size, self.file.path, e
                )
        for sink in self.sinks:
            sink.deliver(entry.to_json())

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
