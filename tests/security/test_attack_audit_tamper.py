"""Tampering with a stopped node's audit log (issue 13, points 1 and 9; invariant 7).

A real node writes a real log: it serves calls, stops (a checkpoint at shutdown), starts
again, serves more calls and stops; a copy of its database taken between the two runs is
the "earlier copy" of the rollback. Each test copies the final data dir, changes its
SQLite file (or its checkpoint file) in one way an attacker with the disk would, and runs
`donjon audit verify` (the real CLI, in a subprocess) on it: it must exit 1 and name the
first bad record, or, where only a checkpoint's root can tell, the range of records
between the last good and the first bad checkpoint. The untouched copy verifies (exit 0),
so each failure is the tampering's and nothing else's.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.merkle import leaf_hash
from harness import donjon_env, run_cli, start_node

#: A checkpoint every 10 records, so the log holds several between its ends.
SETTINGS = {"DONJON_AUDIT_CHECKPOINT_RECORDS": "10"}
CALLS_FIRST_RUN = 30
CALLS_SECOND_RUN = 20
DB = "donjon.db"
CHECKPOINTS = "audit-checkpoints.jsonl"


@dataclass(frozen=True)
class Logs:
    """The final data dir of the stopped node, and a copy of it taken after run one."""

    final: Path
    early: Path


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""


def _echo(root: Path) -> Path:
    fn = root / "tamper-echo"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        "name: tamper-echo\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    (fn / "main.py").write_text("def handler(event, context):\n    return event\n")
    return fn


def _db_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob(DB + "*"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Logs:
    """A log written by two runs of a real node, stopped; the database after the first run."""
    root = tmp_path_factory.mktemp("tamper")
    data = root / "data"
    node = start_node(data, SETTINGS)
    try:
        node.deploy(_echo(root))
        for i in range(CALLS_FIRST_RUN):
            assert node.invoke("tamper-echo", {"i": i}).status_code == 200
    finally:
        node.stop()
    early = root / "early"
    shutil.copytree(data, early, ignore=shutil.ignore_patterns("serve.log"))
    admin = node.admin_key
    node = start_node(data, SETTINGS)
    node.admin_key = admin
    try:
        for i in range(CALLS_SECOND_RUN):
            assert node.invoke("tamper-echo", {"i": i}, key=admin).status_code == 200
    finally:
        node.stop()
    return Logs(data, early)


@pytest.fixture
def work(logs: Logs, tmp_path: Path) -> Path:
    """A copy of the final data dir for one test to tamper with."""
    copy = tmp_path / "data"
    shutil.copytree(logs.final, copy, ignore=shutil.ignore_patterns("serve.log"))
    return copy


def _sql(data_dir: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with sqlite3.connect(data_dir / DB) as conn:
        for statement, args in statements:
            conn.execute(statement, args)


def _rows(data_dir: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / DB) as conn:
        return list(conn.execute(query, args).fetchall())


@dataclass(frozen=True)
class Verdict:
    code: int
    body: dict[str, Any]
    text: str


def _verify(data_dir: Path, *flags: str) -> Verdict:
    done: subprocess.CompletedProcess[str] = run_cli(
        donjon_env(data_dir), "audit", "verify", "--output", "json", *flags, check=False
    )
    try:
        body: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        body = {}
    return Verdict(done.returncode, body, done.stdout + done.stderr)


def _tampered(data_dir: Path) -> Verdict:
    """verify on a tampered copy: exit 1, not ok (and the verdict, for what it names)."""
    verdict = _verify(data_dir)
    assert verdict.code == 1, verdict.text
    assert verdict.body.get("ok") is False, verdict.text
    return verdict


def _size(data_dir: Path) -> int:
    return int(_rows(data_dir, "SELECT max(seq) FROM audit_log")[0][0])


def _invoke_seqs(data_dir: Path) -> list[int]:
    """The seqs of the function.invoke records, oldest first."""
    rows = _rows(data_dir, "SELECT seq, record FROM audit_log ORDER BY seq")
    return [s for s, r in rows if json.loads(bytes(r))["action"] == "function.invoke"]


def _middle(data_dir: Path) -> int:
    """A function.invoke record in the middle of the log, between two checkpoints."""
    seqs = _invoke_seqs(data_dir)
    sizes = set(_checkpoint_sizes(data_dir))
    middle = [s for s in seqs[len(seqs) // 3 :] if s not in sizes and s - 1 not in sizes]
    return middle[0]


def _record(data_dir: Path, seq: int) -> bytes:
    return bytes(_rows(data_dir, "SELECT record FROM audit_log WHERE seq = ?", seq)[0][0])


def _edited(record: bytes) -> bytes:
    """The same record, its outcome changed (still valid canonical JSON)."""
    body = json.loads(record)
    body["outcome"] = "ok" if body["outcome"] != "ok" else "TimeoutError"
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _checkpoint_sizes(data_dir: Path) -> list[int]:
    return [int(r[0]) for r in _rows(data_dir, "SELECT size FROM audit_checkpoints ORDER BY size")]


def _bad_seq(verdict: Verdict) -> int:
    bad = verdict.body.get("bad_seq")
    assert isinstance(bad, int), verdict.text
    return bad


def _named(verdict: Verdict) -> tuple[int, int]:
    """What verify names: its first bad record (seq, seq), or its range (first, last)."""
    bad, span = verdict.body.get("bad_seq"), verdict.body.get("bad_range")
    if isinstance(bad, int):
        return bad, bad
    assert isinstance(span, list) and len(span) == 2, verdict.text
    return int(span[0]), int(span[1])


# --- the control -------------------------------------------------------------------------


def test_untouched_copy_verifies(work: Path) -> None:
    """The copy every tamper test starts from verifies, with several checkpoints in it."""
    verdict = _verify(work)
    assert verdict.code == 0, verdict.text
    assert verdict.body["ok"] is True and verdict.body["records"] == _size(work), verdict.text
    assert len(_checkpoint_sizes(work)) >= 3, _checkpoint_sizes(work)
    assert len((work / CHECKPOINTS).read_text().splitlines()) >= 3


# --- the records -----------------------------------------------------------------------


def test_edited_record_is_named(work: Path) -> None:
    """One record's bytes changed (its stored leaf hash kept): verify names that record."""
    seq = _middle(work)
    _sql(
        work, ("UPDATE audit_log SET record = ? WHERE seq = ?", (_edited(_record(work, seq)), seq))
    )
    assert _bad_seq(_tampered(work)) == seq


def test_record_edited_into_deeply_nested_json_is_named(work: Path) -> None:
    """A record's bytes replaced by brackets nested 100,000 deep: verify still names that
    record (it ended in a RecursionError's traceback, naming nothing)."""
    seq = _middle(work)
    deep = b"[" * 100_000 + b"]" * 100_000
    _sql(work, ("UPDATE audit_log SET record = ? WHERE seq = ?", (deep, seq)))
    verdict = _tampered(work)
    assert _bad_seq(verdict) == seq and "Traceback" not in verdict.text


def test_deleted_record_is_named(work: Path) -> None:
    """A record deleted from the middle: verify names the gap."""
    seq = _middle(work)
    _sql(work, ("DELETE FROM audit_log WHERE seq = ?", (seq,)))
    assert _bad_seq(_tampered(work)) == seq


def test_inserted_record_is_named(work: Path) -> None:
    """A forged record slid into the middle (later ones renumbered, its leaf hash right)."""
    seq = _middle(work)
    forged = _edited(_record(work, seq))
    _sql(
        work,
        ("UPDATE audit_log SET seq = -seq WHERE seq >= ?", (seq,)),
        ("UPDATE audit_log SET seq = 1 - seq WHERE seq < 0", ()),
        (
            "INSERT INTO audit_log (seq, record, hash) VALUES (?, ?, ?)",
            (seq, forged, leaf_hash(forged)),
        ),
    )
    # The forgery itself (right seq, right leaf hash) or a range holding it: not a later one.
    first, last = _named(_tampered(work))
    assert first <= seq <= last, (first, last, seq)


def test_appended_record_is_named(work: Path) -> None:
    """A forged record appended after the last one, with its leaf hash: verify names it."""
    size = _size(work)
    body = json.loads(_record(work, size))
    body.update(seq=size + 1, action="key.create", actor="key:admin", outcome="ok")
    forged = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    _sql(
        work,
        (
            "INSERT INTO audit_log (seq, record, hash) VALUES (?, ?, ?)",
            (size + 1, forged, leaf_hash(forged)),
        ),
    )
    assert _bad_seq(_tampered(work)) == size + 1


def test_reordered_records_are_named(work: Path) -> None:
    """Two records swapped (each keeps its bytes and leaf hash): verify names the first."""
    seq = _middle(work)
    _sql(
        work,
        ("UPDATE audit_log SET seq = -1 WHERE seq = ?", (seq,)),
        ("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq, seq + 3)),
        ("UPDATE audit_log SET seq = ? WHERE seq = -1", (seq + 3,)),
    )
    assert _bad_seq(_tampered(work)) == seq


def test_truncated_log_is_named(work: Path) -> None:
    """The newest records deleted: verify names the first one missing."""
    seq = _middle(work)
    _sql(work, ("DELETE FROM audit_log WHERE seq > ?", (seq,)))
    assert _bad_seq(_tampered(work)) == seq + 1


def test_truncation_behind_a_replayed_signed_head(work: Path) -> None:
    """The log cut back to an older checkpoint, its newer checkpoint rows deleted and that
    checkpoint's own signature replayed as the signed head: the database alone is
    consistent, the checkpoint file outside it is not, and verify names the first record cut."""
    sizes = _checkpoint_sizes(work)
    size = sizes[len(sizes) // 2]
    assert size < _size(work)
    note = str(_rows(work, "SELECT note FROM audit_checkpoints WHERE size = ?", size)[0][0])
    lines = note.split("\n")
    root = base64.b64decode(lines[2])
    time_ms = int(lines[3].removeprefix("time "))
    signature = base64.b64decode(lines[5].rsplit(" ", 1)[1])[4:]
    _sql(
        work,
        ("DELETE FROM audit_log WHERE seq > ?", (size,)),
        ("DELETE FROM audit_checkpoints WHERE size > ?", (size,)),
        (
            "UPDATE audit_head SET seq = ?, hash = ?, mac = ?, ts_ms = ? WHERE id = 1",
            (size, root, signature, time_ms),
        ),
    )
    assert _bad_seq(_tampered(work)) == size + 1


def test_records_and_leaf_hashes_rewritten_together(work: Path) -> None:
    """A record rewritten with its leaf hash recomputed: only the checkpoints' roots can
    tell, so verify names the range between the last good and the first bad checkpoint."""
    seq = _middle(work)
    forged = _edited(_record(work, seq))
    _sql(
        work,
        (
            "UPDATE audit_log SET record = ?, hash = ? WHERE seq = ?",
            (forged, leaf_hash(forged), seq),
        ),
    )
    verdict = _tampered(work)
    sizes = _checkpoint_sizes(work)
    last_good = max(s for s in sizes if s < seq)
    first_bad = min(s for s in sizes if s >= seq)
    # The range it names is exactly the records between those two checkpoints.
    assert _named(verdict) == (last_good + 1, first_bad), verdict.text


# --- the checkpoints -----------------------------------------------------------------------


def _other_root_note(note: str, other_note: str) -> str:
    """`note` with its root line (the third) taken from `other_note`: a forged body."""
    lines, other = note.split("\n"), other_note.split("\n")
    lines[2] = other[2]
    return "\n".join(lines)


def test_edited_checkpoint_row_is_detected(work: Path) -> None:
    """A checkpoint row in the database given another checkpoint's root: verify fails."""
    rows = _rows(work, "SELECT size, root, note FROM audit_checkpoints ORDER BY size")
    (size, _, note), (_, other_root, other_note) = rows[1], rows[2]
    _sql(
        work,
        (
            "UPDATE audit_checkpoints SET root = ?, note = ? WHERE size = ?",
            (other_root, _other_root_note(note, other_note), size),
        ),
    )
    verdict = _tampered(work)
    assert "checkpoint" in verdict.text.lower(), verdict.text


def test_edited_checkpoint_file_is_detected(work: Path) -> None:
    """A line of the checkpoint file given another line's root: verify fails."""
    path = work / CHECKPOINTS
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1]["root"] = lines[2]["root"]
    lines[1]["note"] = _other_root_note(lines[1]["note"], lines[2]["note"])
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    verdict = _tampered(work)
    assert "checkpoint" in verdict.text.lower(), verdict.text


def test_checkpoint_file_line_nested_deep_is_detected(work: Path) -> None:
    """A line of the checkpoint file replaced by JSON nested 100,000 deep: a problem that
    verify names by its line, not a RecursionError."""
    path = work / CHECKPOINTS
    lines = path.read_text().splitlines()
    lines[1] = "[" * 100_000 + "]" * 100_000
    path.write_text("".join(line + "\n" for line in lines))
    verdict = _tampered(work)
    assert "line 2 of" in verdict.text and "Traceback" not in verdict.text, verdict.text


def _roll_back(work: Path, early: Path) -> int:
    """Replace `work`'s database with `early`'s (the checkpoint file kept); -> its size."""
    for f in _db_files(work):
        f.unlink()
    for f in _db_files(early):
        shutil.copy2(f, work / f.name)
    return _size(work)


def test_node_refuses_to_serve_a_rolled_back_database(work: Path, logs: Logs) -> None:
    """The database rolled back to the earlier copy, then the node started on it: it refuses
    to start (it would write a history the checkpoint file contradicts), and verify fails."""
    early_size = _roll_back(work, logs.early)
    with pytest.raises(AssertionError, match="rolled back"):  # start_node: serve.log's text
        start_node(work, SETTINGS).stop()
    verdict = _tampered(work)
    assert _bad_seq(verdict) == early_size + 1, verdict.text


def test_database_rolled_back_to_an_earlier_copy(work: Path, logs: Logs, tmp_path: Path) -> None:
    """The database file replaced by a copy taken between the runs, the checkpoint file
    kept: the file's newest checkpoint is beyond the database, and verify says so."""
    # The earlier copy, with the checkpoint file of its time, is a log that verifies:
    # only the newer file outside the database can tell the rollback.
    early = tmp_path / "early"
    shutil.copytree(logs.early, early)
    assert _verify(early).code == 0, _verify(early).text
    early_size = _roll_back(work, early)
    file_sizes = [
        json.loads(line)["size"] for line in (work / CHECKPOINTS).read_text().splitlines()
    ]
    assert max(file_sizes) > early_size  # the copy really is older than the file
    verdict = _tampered(work)
    assert _bad_seq(verdict) == early_size + 1, verdict.text


def test_full_rollback_after_an_incremental_verify(work: Path, logs: Logs) -> None:
    """The database AND the checkpoint file rolled back together, after `verify
    --incremental` saw the newer log: the verifier's own record of what it checked tells."""
    first = _verify(work, "--incremental")
    assert first.code == 0, first.text
    _roll_back(work, logs.early)
    shutil.copy2(logs.early / CHECKPOINTS, work / CHECKPOINTS)
    verdict = _verify(work, "--incremental")
    assert verdict.code == 1 and verdict.body.get("ok") is False, verdict.text


def test_verify_does_not_write_through_a_link_planted_in_the_data_dir(
    work: Path, tmp_path: Path
) -> None:
    """Whoever writes the data dir (the node's user) links the verifier's temporary state file
    to a file of the auditor's: verify, run by the auditor, leaves that file as it was."""
    victim = tmp_path / "auditors-file"
    victim.write_text("precious\n")
    (work / "audit-verified.json.tmp").symlink_to(victim)
    verdict = _verify(work)
    assert verdict.code == 0, verdict.text
    assert victim.read_text() == "precious\n"
    state = work / "audit-verified.json"
    assert not state.is_symlink() and json.loads(state.read_text())["size"] == _size(work)


def test_forged_seq_cannot_rewrite_the_verdict_on_a_terminal(work: Path) -> None:
    """A record edited to claim a "seq" made of escape sequences (a window title, cursor
    up, erase, a carriage return and a line of success): verify's TAMPERED line shows
    them as text. (Click strips CSI sequences when stderr is not a terminal, so the
    OSC title and the carriage return are what a capture can see arrive.)"""
    seq = _middle(work)
    body = json.loads(_record(work, seq))
    body["seq"] = "\x1b]0;pwned\x07\x1b[1A\x1b[2K\raudit log intact: 99 records"
    _sql(work, ("UPDATE audit_log SET record = ? WHERE seq = ?", (json.dumps(body).encode(), seq)))
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli", "audit", "verify"],
        env=donjon_env(work),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert b"\x1b" not in done.stderr and b"\r" not in done.stderr, done.stderr
    assert b"audit log TAMPERED" in done.stderr and b"\\x1b]0;pwned" in done.stderr, done.stderr
    assert _bad_seq(_tampered(work)) == seq  # --output json names it, as before
