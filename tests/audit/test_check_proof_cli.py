"""`donjon audit check-proof` as a third party runs it: a process with no node, no data
dir and no DONJON_* setting, only the files and the verifier key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.audit.export import export_lines
from donjon.audit.prover import Prover
from proof_support import BuiltLog, build_log


@pytest.fixture
def log(tmp_path: Path) -> Iterator[BuiltLog]:
    built = build_log(tmp_path / "audit.db", 9, (3, 7))
    yield built
    built.engine.dispose()


@pytest.fixture
def stranger(tmp_path: Path) -> Path:
    """An empty working directory and home, far from any data dir."""
    home = tmp_path / "stranger"
    home.mkdir()
    return home


def _check(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli", "audit", "check-proof", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _files(log: BuiltLog, home: Path) -> tuple[Path, Path, Path, Path]:
    prover = Prover(log.engine, log.key.verifier)
    key = home / "audit-signing.pub"
    key.write_text(str(log.key.verifier) + "\n")
    inclusion = home / "proof.json"
    inclusion.write_text(json.dumps(prover.prove(5), indent=2))
    consistency = home / "consistency.json"
    consistency.write_text(json.dumps(prover.consistency(3, 7)))
    export = home / "export.jsonl"
    export.write_text("\n".join(export_lines(prover, 2)) + "\n")
    return key, inclusion, consistency, export


def test_valid_proofs_and_exports_pass_with_no_node_and_no_settings(
    log: BuiltLog, stranger: Path
) -> None:
    """Exit 0 for an inclusion proof, a consistency proof and an export (key file or string)."""
    key, inclusion, consistency, export = _files(log, stranger)
    for path in (inclusion, consistency, export):
        done = _check(stranger, str(path), "--key", str(key))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("valid ")
    done = _check(stranger, str(inclusion), "--key", str(log.key.verifier), "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["valid"] is True
    syslog = stranger / "export.log"
    prover = Prover(log.engine, log.key.verifier)
    syslog.write_text("\n".join(export_lines(prover, 1, "syslog")) + "\n")
    assert _check(stranger, str(syslog), "--key", str(key)).returncode == 0


def test_a_tampered_proof_exits_1_with_the_reason(log: BuiltLog, stranger: Path) -> None:
    """An edited record in a proof: exit 1, and the reason on stderr."""
    key, inclusion, _, _ = _files(log, stranger)
    doc = json.loads(inclusion.read_text())
    doc["record"] = doc["record"].replace('"outcome":"ok"', '"outcome":"denied"')
    inclusion.write_text(json.dumps(doc))
    done = _check(stranger, str(inclusion), "--key", str(key))
    assert done.returncode == 1
    assert done.stderr.startswith("INVALID: the record does not hash to the proof's leaf_hash")


def test_a_tampered_export_exits_1_with_the_reason(log: BuiltLog, stranger: Path) -> None:
    """A record dropped from an export: exit 1, naming the record expected."""
    key, _, _, export = _files(log, stranger)
    lines = export.read_text().splitlines()
    del lines[3]  # header, records 2 and 3, then record 4
    export.write_text("\n".join(lines) + "\n")
    done = _check(stranger, str(export), "--key", str(key), "--output", "json")
    assert done.returncode == 1
    reason = json.loads(done.stdout)["reason"]
    assert "expected record 4, found 5" in reason


def test_a_proof_checked_against_another_key_exits_1(log: BuiltLog, stranger: Path) -> None:
    """The right proof under someone else's key is invalid."""
    from donjon.audit.checkpoint import SigningKey

    _, inclusion, _, _ = _files(log, stranger)
    other = str(SigningKey.generate().verifier)
    done = _check(stranger, str(inclusion), "--key", other)
    assert done.returncode == 1
    assert "not validly signed" in done.stderr


def test_a_bad_key_or_a_file_that_is_no_proof_is_a_clear_error(
    log: BuiltLog, stranger: Path
) -> None:
    """A key that does not parse is a usage error (2); a non-proof file is invalid (1)."""
    key, inclusion, _, _ = _files(log, stranger)
    done = _check(stranger, str(inclusion), "--key", "not-a-key")
    assert done.returncode == 2 and "--key" in done.stderr
    junk = stranger / "junk.txt"
    junk.write_text("hello\nworld\n")
    done = _check(stranger, str(junk), "--key", str(key))
    assert done.returncode == 1 and "neither a proof" in done.stderr


def test_json_nested_too_deep_is_invalid_not_a_crash(log: BuiltLog, stranger: Path) -> None:
    """A proof, a proof's record or an export line nested 100,000 deep (what a hostile node
    could hand a third party): exit 1 with the reason, never a RecursionError's traceback."""
    key, inclusion, _, export = _files(log, stranger)
    deep = "[" * 100_000 + "]" * 100_000
    doc = json.loads(inclusion.read_text())
    del doc["leaf_hash"]  # optional: the record is read before it is hashed into the tree
    cases = {
        "doc.json": deep,
        "record.json": json.dumps({**doc, "record": deep}),
        "export.jsonl": export.read_text().replace('{"record":', deep + '\n{"record":', 1),
    }
    for name, text in cases.items():
        (stranger / name).write_text(text)
        done = _check(stranger, name, "--key", str(key))
        assert done.returncode == 1, (name, done.stderr)
        assert done.stderr.startswith("INVALID: ") and "Traceback" not in done.stderr, name


def test_an_export_cut_short_is_invalid(log: BuiltLog, stranger: Path) -> None:
    """An export cut after its header, or after an earlier checkpoint (the records and
    checkpoints past it gone), is not the export of records since..until its header names:
    exit 1 (it used to pass, "records 2..1 (0) verified")."""
    key, _, _, export = _files(log, stranger)
    lines = export.read_text().splitlines()
    kinds = [json.loads(x)["type"] for x in lines]
    assert kinds == ["header"] + ["record"] * 6 + ["checkpoint"] * 2  # records 2..7; 3, 7
    cuts = {
        "header.jsonl": lines[:1],
        "at3.jsonl": [*lines[:3], lines[7]],  # records 2, 3 and the checkpoint of 3
    }
    for name, kept in cuts.items():
        (stranger / name).write_text("\n".join(kept) + "\n")
        done = _check(stranger, name, "--key", str(key))
        assert done.returncode == 1, (name, done.stdout)
        assert "until 7" in done.stderr and "cut" in done.stderr, done.stderr


def test_a_record_with_a_lone_surrogate_is_invalid_not_a_crash(
    log: BuiltLog, stranger: Path
) -> None:
    """A proof's record (or an export's) holding a lone surrogate escape is no UTF-8 text
    and so no record the node wrote: exit 1 with the reason, never a UnicodeEncodeError."""
    key, inclusion, _, export = _files(log, stranger)
    doc = json.loads(inclusion.read_text())
    lone = "\ud800"  # json.dumps writes it as the escape \ud800, which JSON allows
    doc["record"] = doc["record"].replace('"outcome":"ok"', f'"outcome":"{lone}"')
    lines = export.read_text().splitlines()
    record = json.loads(lines[2])
    record["record"] = record["record"].replace('"outcome":"ok"', f'"outcome":"{lone}"')
    lines[2] = json.dumps(record)
    cases = {"proof.json": json.dumps(doc), "export.jsonl": "\n".join(lines) + "\n"}
    for name, text in cases.items():
        (stranger / name).write_text(text)
        done = _check(stranger, name, "--key", str(key))
        assert done.returncode == 1, (name, done.stderr)
        assert done.stderr.startswith("INVALID: ") and "Traceback" not in done.stderr, name
