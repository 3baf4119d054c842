"""`donjon audit export`: full and partial exports verify; every alteration is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.audit.checkpoint import SigningKey
from donjon.audit.export import check_export, export_lines, json_of_line
from donjon.audit.proofs import ProofInvalid
from donjon.audit.prover import Prover
from proof_support import BuiltLog, build_log


@pytest.fixture
def log(tmp_path: Path) -> Iterator[BuiltLog]:
    built = build_log(tmp_path / "audit.db", 21, (4, 9, 16, 19))
    yield built
    built.engine.dispose()


@pytest.fixture
def prover(log: BuiltLog) -> Prover:
    return Prover(log.engine, log.key.verifier)


def test_a_full_export_verifies_and_ends_at_the_newest_checkpoint(
    log: BuiltLog, prover: Prover
) -> None:
    """Records 1..19 (the newest checkpoint) and all four checkpoints, verified."""
    lines = list(export_lines(prover))
    header = json.loads(lines[0])
    assert header["since"] == 1 and header["until"] == 19 and header["prefix"] == []
    assert header["verifier_key"] == str(log.key.verifier)
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds == ["header"] + ["record"] * 19 + ["checkpoint"] * 4
    checked = check_export(lines, log.key.verifier)
    assert "records 1..19 (19) verified against 4 checkpoint(s)" in checked.summary


@pytest.mark.parametrize("since", [2, 5, 10, 16, 17, 19])
def test_a_partial_export_verifies_from_its_prefix(
    log: BuiltLog, prover: Prover, since: int
) -> None:
    """From any record, the prefix lets the roots be recomputed; earlier checkpoints left out."""
    lines = list(export_lines(prover, since))
    sizes = [json.loads(x)["size"] for x in lines if '"type":"checkpoint"' in x]
    assert sizes == [s for s in (4, 9, 16, 19) if s >= since]
    check_export(lines, log.key.verifier)


def test_an_export_past_the_newest_checkpoint_is_empty_and_valid(
    log: BuiltLog, prover: Prover
) -> None:
    """Nothing after the newest checkpoint is signed yet: the export holds no record."""
    lines = list(export_lines(prover, 30))
    assert len(lines) == 1 and json.loads(lines[0])["since"] == 20
    check_export(lines, log.key.verifier)


def test_a_syslog_export_is_rfc5424_lines_carrying_the_same_json(
    log: BuiltLog, prover: Prover
) -> None:
    """Each line is <110>1 TIMESTAMP HOST donjon - TYPE - JSON, and it verifies."""
    jsonl = list(export_lines(prover, 3))
    syslog = list(export_lines(prover, 3, "syslog"))
    assert len(jsonl) == len(syslog)
    for number, (plain, line) in enumerate(zip(jsonl, syslog, strict=True), 1):
        parts = line.split(" ", 7)
        assert parts[0] == "<110>1" and parts[3] == "donjon" and parts[6] == "-"
        assert parts[1].endswith("Z") and parts[5] == json.loads(plain)["type"]
        assert json_of_line(line, number) == json.loads(plain)
    check_export(syslog, log.key.verifier)


def _records(lines: list[str]) -> list[int]:
    return [i for i, x in enumerate(lines) if '"type":"record"' in x]


def _edit_record(lines: list[str], index: int) -> list[str]:
    out = list(lines)
    obj = json.loads(out[index])
    obj["record"] = obj["record"].replace('"outcome":"ok"', '"outcome":"no"')
    out[index] = json.dumps(obj)
    return out


def _tampered(lines: list[str], other: SigningKey) -> Iterator[tuple[str, list[str]]]:
    recs = _records(lines)
    yield "a record edited", _edit_record(lines, recs[3])
    yield "a record deleted", lines[: recs[3]] + lines[recs[3] + 1 :]
    yield (
        "two records swapped",
        [*lines[: recs[2]], lines[recs[3]], lines[recs[2]], *lines[recs[3] + 1 :]],
    )
    extra = json.loads(lines[recs[-1]])
    extra["seq"] += 1
    record = json.loads(extra["record"])
    record["seq"] = extra["seq"]
    extra["record"] = json.dumps(record)
    yield "a record appended", [*lines[: recs[-1] + 1], json.dumps(extra), *lines[recs[-1] + 1 :]]
    yield "the last checkpoint removed", lines[:-1]
    header = json.loads(lines[0])
    header["prefix"] = [("00" * 32) for _ in header["prefix"]]
    yield "the prefix altered", [json.dumps(header), *lines[1:]]
    header = json.loads(lines[0])
    header["since"] += 1
    yield "since moved", [json.dumps(header), *lines[1:]]
    cp = json.loads(lines[-1])
    cp["note"] = cp["note"].replace("\n19\n", "\n18\n")
    yield "a checkpoint's size edited", [*lines[:-1], json.dumps(cp)]
    yield "a line that is not JSON", [*lines[:5], "{oops", *lines[5:]]
    yield "no header", lines[1:]
    yield "empty", []


def test_every_alteration_of_an_export_is_refused(log: BuiltLog, prover: Prover) -> None:
    """Edits, deletions, swaps, additions, a lost checkpoint, a forged prefix: all refused."""
    lines = list(export_lines(prover, 5))
    check_export(lines, log.key.verifier)
    for what, bad in _tampered(lines, SigningKey.generate()):
        with pytest.raises(ProofInvalid) as caught:
            check_export(bad, log.key.verifier)
        assert caught.value.message, what


def test_an_export_is_refused_under_another_key(prover: Prover) -> None:
    """The checkpoints of an export must be signed by the key the verifier was given."""
    lines = list(export_lines(prover))
    with pytest.raises(ProofInvalid, match="not validly signed"):
        check_export(lines, SigningKey.generate().verifier)
