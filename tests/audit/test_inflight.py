"""The journal of calls in flight (audit/inflight.py): what a process killed in the
middle of its calls leaves noted, read back whole, and nothing for calls that ended."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from donjon.audit import inflight
from donjon.audit.inflight import CallsInFlight, InFlightFull, Interrupted, read_notes, reopen
from donjon.audit.log import AuditEvent
from donjon.gateway.problems import STATUS, retry_after_of


def test_calls_noted_and_not_ended_are_read_back(tmp_path: Path) -> None:
    path = tmp_path / "calls-in-flight"
    journal = CallsInFlight(path)
    a = journal.begin("req-a", "echo@3", "http", "key:ops", time.perf_counter())
    b = journal.begin("req-b", "thumb@1", "s3", "s3", time.perf_counter())
    journal.end(a)
    assert journal.in_flight() == 1
    (left,) = read_notes(path)
    assert left == Interrupted("req-b", "thumb@1", "s3", "s3", left.started_at, False)
    # Its start in wall time, from the monotonic time noted (this minute: not a timing).
    assert left.started_at == pytest.approx(time.time(), abs=60)
    journal.end(b)
    assert read_notes(path) == []
    journal.close()


def test_notes_outlive_a_sigkill_of_the_process_that_made_them(tmp_path: Path) -> None:
    """A child notes three calls, ends one and is killed with SIGKILL: its two calls in
    flight are in the file, whole."""
    path = tmp_path / "calls-in-flight"
    child = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from donjon.audit.inflight import CallsInFlight
        journal = CallsInFlight(Path({str(path)!r}))
        journal.begin("r1", "f@1", "http", "key:a", 1.0)
        done = journal.begin("r2", "f@1", "http", "key:b", 2.0)
        journal.begin("r3", "g@2", "schedule", "schedule", 3.0)
        journal.end(done)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], check=False, timeout=60)
    assert proc.returncode == -9
    assert [(c.request_id, c.target, c.actor) for c in read_notes(path)] == [
        ("r1", "f@1", "key:a"),
        ("r3", "g@2", "schedule"),
    ]


def test_the_journal_grows_past_its_first_slots(tmp_path: Path) -> None:
    path = tmp_path / "calls-in-flight"
    journal = CallsInFlight(path)
    slots = [journal.begin(f"r{i}", "f@1", "http", "public", float(i)) for i in range(600)]
    assert len(set(slots)) == 600
    assert sorted(c.request_id for c in read_notes(path)) == sorted(f"r{i}" for i in range(600))
    for slot in slots[:599]:
        journal.end(slot)
    assert [c.request_id for c in read_notes(path)] == ["r599"]
    journal.close()


def test_past_the_most_slots_a_call_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "MAX_SLOTS", 512)
    journal = CallsInFlight(tmp_path / "calls-in-flight")
    for i in range(511):  # (the file's first slot is its header)
        journal.begin(f"r{i}", "f@1", "http", "public", 0.0)
    with pytest.raises(InFlightFull) as refused:
        journal.begin("one-more", "f@1", "http", "public", 0.0)
    journal.close()
    # A refusal the caller may retry (503 with Retry-After), not a failure of the node.
    assert STATUS[InFlightFull] == 503
    assert retry_after_of(refused.value) == 1.0


def test_a_caller_too_long_for_its_note_is_named_by_its_digest_never_cut(
    tmp_path: Path,
) -> None:
    """A token's `sub` may be 256 characters of up to 4 bytes each: its caller's name does
    not fit a slot. Before, the note was cut and the record named the cut name: here
    exactly another caller's (a subject the first one's begins with). Now the record names
    the caller by its SHA-256."""
    path = tmp_path / "calls-in-flight"
    journal = CallsInFlight(path)
    room = inflight.NOTE_BYTES - len(b"req\x1ff@1\x1fhttp\x1f")
    victim = "jwt:corp:" + "€" * ((room - len("jwt:corp:")) // 3)
    assert len(victim.encode()) == room and len(victim) - len("jwt:corp:") <= 256
    attacker = victim + "€" * (256 - (len(victim) - len("jwt:corp:")))
    journal.begin("req", "f@1", "http", attacker, 5.0)
    (call,) = read_notes(path)
    assert (call.request_id, call.target, call.trigger) == ("req", "f@1", "http")
    event = call.event()
    assert event.actor != victim
    assert event.actor == "sha256:" + hashlib.sha256(attacker.encode()).hexdigest()
    assert "actor_digest" in event.detail
    journal.close()


def test_a_link_in_place_of_the_journal_is_not_read(tmp_path: Path) -> None:
    """The journal is read without following a link (before, one to /dev/zero was read
    without end at the node's start; here one to a file of notes made elsewhere) and no
    further than a journal's most slots."""
    elsewhere = tmp_path / "elsewhere"
    made = CallsInFlight(elsewhere)
    made.begin("req", "f@1", "http", "key:someone-else", 5.0)
    path = tmp_path / "calls-in-flight"
    path.symlink_to(elsewhere)
    with pytest.raises(OSError, match="symbolic links"):  # ELOOP
        read_notes(path)
    made.close()


def test_a_journal_opened_anew_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "calls-in-flight"
    old = CallsInFlight(path)
    old.begin("left", "f@1", "http", "public", 0.0)
    assert len(read_notes(path)) == 1
    old.close()
    CallsInFlight(path).close()
    assert read_notes(path) == []


class _Log:
    """What `reopen` asks of the audit log: `record`, awaited."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)


def test_reopen_records_each_call_left_then_clears(tmp_path: Path) -> None:
    path = tmp_path / "calls-in-flight"
    old = CallsInFlight(path)
    old.begin("req-1", "echo@2", "http", "key:dev", time.perf_counter())
    log = _Log()
    journal = asyncio.run(reopen(path, log))  # type: ignore[arg-type]  # a stand-in log
    (event,) = log.events
    assert (event.actor, event.action, event.target, event.outcome) == (
        "key:dev",
        "function.invoke",
        "echo@2",
        "interrupted",
    )
    assert event.detail["request_id"] == "req-1"
    assert event.detail["trigger"] == "http"
    assert event.detail["started_at"] == pytest.approx(time.time(), abs=60)
    assert read_notes(path) == []
    journal.close()
    old.close()


def test_a_file_of_another_layout_is_not_read_as_notes(tmp_path: Path) -> None:
    """Only a journal's own header makes its slots notes (a file of another layout, or
    cut short, is none: no record is made up from it)."""
    path = tmp_path / "calls-in-flight"
    path.write_bytes(b"\x01" * 4096)
    assert read_notes(path) == []
    path.write_bytes(b"dj-fly-1")
    assert read_notes(path) == []
