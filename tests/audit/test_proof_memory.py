"""Proofs and exports of a long log hold a page of leaf hashes at a time, not the log.

Each proof (and the prefix of a partial export) reads every stored leaf hash of the
tree it proves against, to check that they still hash to the signed root. It used to
read them all into one list first: about 120 bytes a record, so on a log of ten
million records every proof request (any `audit:read` key, scoped or not) held more
than a gigabyte, one such per request served at once. Memory is counted with
tracemalloc, never timed.
"""

from __future__ import annotations

import functools
import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.audit.checkpoint import Checkpoint
from donjon.audit.export import check_export, export_lines
from donjon.audit.frontier import Frontier
from donjon.audit.proofs import check_consistency, check_inclusion
from donjon.audit.prover import PAGE, Prover
from proof_support import BuiltLog, build_log

pytestmark = pytest.mark.slow  # logs of twenty pages of leaves, proved under tracemalloc

#: Twenty pages of leaves: held whole, about 12 MB (three times the bound below).
SIZE = 20 * PAGE
OLD = SIZE // 2 + 3
#: One page of rows as SQLAlchemy returns them is about 2.4 MB: room for it and a spare.
BOUND = 4_000_000


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltLog]:
    built = build_log(tmp_path_factory.mktemp("long") / "audit.db", SIZE, (OLD, SIZE))
    yield built
    built.engine.dispose()


def _peak(work: Callable[[], object]) -> tuple[int, object]:
    tracemalloc.start()
    try:
        done = work()
        return tracemalloc.get_traced_memory()[1], done
    finally:
        tracemalloc.stop()


def test_an_inclusion_proof_holds_a_page_of_leaves(log: BuiltLog) -> None:
    """Proving the first and a middle record of a long log stays under the bound."""
    prover = Prover(log.engine, log.key.verifier)
    for seq, size in ((1, SIZE), (OLD - 1, OLD), (SIZE, SIZE)):
        peak, doc = _peak(functools.partial(prover.prove, seq, size))
        assert peak < BOUND, (seq, size, peak)
        assert isinstance(doc, dict)
        check_inclusion(doc, log.key.verifier)


def test_a_consistency_proof_holds_a_page_of_leaves(log: BuiltLog) -> None:
    """A consistency proof between the two checkpoints of a long log stays under the bound."""
    prover = Prover(log.engine, log.key.verifier)
    peak, doc = _peak(lambda: prover.consistency(OLD, SIZE))
    assert peak < BOUND, peak
    assert isinstance(doc, dict)
    check_consistency(doc, log.key.verifier)


def test_a_partial_export_holds_a_page_of_leaves(log: BuiltLog) -> None:
    """The prefix of an export from near the end of a long log stays under the bound."""
    prover = Prover(log.engine, log.key.verifier)
    lines = export_lines(prover, SIZE - 2)
    peak, header = _peak(lambda: next(lines))
    assert peak < BOUND, peak
    assert isinstance(header, str) and json.loads(header)["since"] == SIZE - 2
    check_export([header, *lines], log.key.verifier)


def _many_checkpoints(path: Path, count: int) -> BuiltLog:
    """A log of `count` records with a checkpoint after each (as a busy node makes one
    every 30 s for months), their roots folded as they go."""
    built = build_log(path, count, ())
    frontier = Frontier()
    rows = []
    for size, leaf in enumerate(built.leaves, 1):
        frontier.append(leaf)
        checkpoint = Checkpoint(built.key.origin, size, frontier.root(), 1_800_000_000_000 + size)
        note = built.key.sign(checkpoint)
        rows.append({"s": size, "r": checkpoint.root, "t": size, "n": note})
    with built.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_checkpoints (size, root, ts, note) VALUES (:s, :r, :t, :n)"),
            rows,
        )
    return built


def test_an_export_streams_its_checkpoints(tmp_path: Path) -> None:
    """The checkpoints of an export are read and written a page at a time: a whole export
    of a log with ten thousand of them (held at once, some 10 MB) stays under the
    bound, and verifies."""
    built = _many_checkpoints(tmp_path / "audit.db", 10_000)
    try:
        prover = Prover(built.engine, built.key.verifier)
        peak, lines = _peak(lambda: sum(1 for _ in export_lines(prover)))
        assert peak < BOUND, peak
        assert lines == 1 + 10_000 + 10_000  # the header, each record, each checkpoint
        check_export(export_lines(prover), built.key.verifier)
    finally:
        built.engine.dispose()
