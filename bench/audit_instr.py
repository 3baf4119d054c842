"""Instructions per audit record, counted by callgrind (issue 14, target 4).

Wall-clock rates of the audit append move by 2x with the load of a shared
machine; the instructions a process executes per record do not. This runs, under
`valgrind --tool=callgrind --trace-children=yes`:

- `record()` from W concurrent waiters through the writer process (what
  `audit_phase.py` measures), for a small and a large number of records; the
  difference of the two counts, divided by the difference of the records, is
  the instructions per record of the loop's process and of the writer process
  (start-up and imports cancel out);
- sqlite3 alone inserting the same rows in 1000-row commits (audit_phase's
  floors: executemany of bytes, the target's baseline, and 256-row INSERTs of
  bytearrays, the writer's way), the same way.

    python bench/audit_instr.py [--python PY] [--small 5120] [--large 25600]
        [--waiters 512] [--json FILE]

Pass another tree's interpreter (`--python /work/other/.venv/bin/python`) to count
that tree's Donjon (this script and audit_phase.py are run from this tree; they use
only what both trees have). Read with care: under valgrind OpenSSL's SHA-256 runs
without the CPU's SHA extensions, so the hashing weighs several times what it does
natively; how many records share a transaction also differs (valgrind serialises
threads and slows everything), and with it the per-transaction share (the head's
signature, the commit). For measurement only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)
_CMD = re.compile(r"^cmd:\s*(.*)$", re.MULTILINE)


def _child_records(records: int, waiters: int) -> None:
    import audit_phase
    import sandboxes  # the bench's loop: uvloop when installed, as the gateway runs

    with tempfile.TemporaryDirectory(prefix="donjon-audit-instr-") as tmp:
        engine, log, _ = audit_phase._open(Path(tmp) / "audit.db")
        sandboxes.run_loop(lambda: audit_phase._concurrent(log, waiters, records, True))
        engine.dispose()


def _child_floor(rows: int, blocks: bool) -> None:
    import audit_phase

    fill = audit_phase._floor_rows_blocks if blocks else audit_phase._floor_rows
    with tempfile.TemporaryDirectory(prefix="donjon-audit-instr-") as tmp:
        fill(Path(tmp) / "floor.db", 1000, rows // 1000, b"x" * 211)


def _counts(python: str, args: list[str], out: Path) -> dict[str, int]:
    """Instructions of each process of one run: {"loop": n, "writer": n}."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            f"--callgrind-out-file={out}/cg-%p.out",
            python,
            str(Path(__file__).resolve()),
            *args,
        ],
        check=True,
        capture_output=True,
    )
    counts: dict[str, int] = {}
    for f in out.glob("cg-*.out"):
        text = f.read_text(errors="replace")
        cmd, total = _CMD.search(text), _TOTALS.search(text)
        name = "" if cmd is None else cmd.group(1)
        ours = "audit_instr.py" in name or "donjon.audit.writer" in name
        if total is None or not ours:
            continue  # a helper the interpreter ran (file, uname)
        kind = "writer" if "donjon.audit.writer" in name else "loop"
        counts[kind] = counts.get(kind, 0) + int(total.group(1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--small", type=int, default=5120)
    parser.add_argument("--large", type=int, default=25600)
    parser.add_argument("--waiters", type=int, default=512)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--child", choices=("records", "floor", "floor-blocks"), help=argparse.SUPPRESS
    )
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "records":
        _child_records(args.n, args.waiters)
        return
    if args.child in ("floor", "floor-blocks"):
        _child_floor(args.n, args.child == "floor-blocks")
        return
    result: dict[str, Any] = {"python": args.python, "waiters": args.waiters}
    span = args.large - args.small
    with tempfile.TemporaryDirectory(prefix="donjon-audit-instr-") as tmp:
        runs = {}
        for n in (args.small, args.large):
            argv = ["--child", "records", "--n", str(n), "--waiters", str(args.waiters)]
            runs[n] = _counts(args.python, argv, Path(tmp) / f"records-{n}")
        for kind in ("loop", "writer"):
            result[f"{kind}_per_record"] = (runs[args.large][kind] - runs[args.small][kind]) / span
        rows = {n: n // 1000 * 1000 for n in (args.small, args.large)}
        for child, key in (("floor", "floor_per_row"), ("floor-blocks", "floor_blocks_per_row")):
            floors = {
                n: _counts(
                    args.python, ["--child", child, "--n", str(r)], Path(tmp) / f"{child}-{n}"
                )
                for n, r in rows.items()
            }
            result[key] = (floors[args.large]["loop"] - floors[args.small]["loop"]) / (
                rows[args.large] - rows[args.small]
            )
    both = result["loop_per_record"] + result["writer_per_record"]
    print(f"instructions per audit record ({args.python}, {args.waiters} waiters):")
    print(f"  the loop's process  {result['loop_per_record']:>9,.0f}")
    print(f"  the writer process  {result['writer_per_record']:>9,.0f}")
    print(f"  both                {both:>9,.0f}")
    print(f"  sqlite3 alone, per row, 1000-row commits  {result['floor_per_row']:>9,.0f}")
    print(
        "  sqlite3 alone, per row, bound the writer's way (256-row INSERTs)"
        f"  {result['floor_blocks_per_row']:>9,.0f}"
    )
    print(f"  both / sqlite3 alone  {both / result['floor_per_row']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
