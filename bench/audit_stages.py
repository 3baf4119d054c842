"""The audit writer's stages, summed over a run (bench/stages/sitecustomize.py's records).

Per run of the commit thread: its transactions and their mean size, and the share
of the run's span it spent in each stage: the inserts and the head's signature
(from taking the chunks to the final statements), COMMIT (the head, a checkpoint
by cadence and the COMMIT itself, with SQLite's WAL checkpoint when one falls in
it: its fsyncs), answering, whatever runs after the answers, and waiting idle for
records; the COMMITs over 4x the median and over 4 ms (WAL checkpoints and the
disk's slow moments) and their share beyond the median; and the share of the span
the reading thread spent preparing records.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

_KEYS = ("finish", "stored", "answered")


def summarise(path: Path) -> list[dict[str, Any]]:
    """One summary per writer run recorded in `path`."""
    out = []
    for line in path.read_text().splitlines():
        stages = json.loads(line)
        txns: list[dict[str, float]] = []
        cur: dict[str, float] | None = None
        prepare, prepared, started = 0.0, 0, 0.0
        for kind, t, n in stages:
            if kind == "take":
                cur = {"take": t, "n": n}
            elif kind in _KEYS and cur is not None:
                cur[kind] = t
            elif kind == "end" and cur is not None:
                cur["end"] = t
                if all(k in cur for k in _KEYS):
                    txns.append(cur)
                cur = None
            elif kind == "prepare":
                started, prepared = t, prepared + n
            elif kind == "prepared":
                prepare += t - started
        if len(txns) < 10:
            continue
        span = txns[-1]["end"] - txns[0]["take"]
        records = sum(x["n"] for x in txns)

        def share(a: str, b: str, txns: list[dict[str, float]] = txns, span: float = span) -> float:
            return sum(x[b] - x[a] for x in txns) / span

        commits = sorted(x["stored"] - x["finish"] for x in txns)
        median = commits[len(commits) // 2]
        slow = [c for c in commits if c > 4 * median and c > 0.004]
        out.append(
            {
                "txns": len(txns),
                "mean_records": records / len(txns),
                "span_ms": span * 1e3,
                "inserts_sign": share("take", "finish"),
                "commit": share("finish", "stored"),
                "commit_p50_ms": median * 1e3,
                "slow_commits": len(slow),
                "slow_excess": sum(c - median for c in slow) / span,
                "answer": share("stored", "answered"),
                "after": share("answered", "end"),
                "idle": sum(b["take"] - a["end"] for a, b in pairwise(txns)) / span,
                "prepare": prepare / span,
            }
        )
    return out


def show(s: dict[str, Any]) -> str:
    return (
        f"  stages: {s['txns']} transactions of {s['mean_records']:.0f} records on average,"
        f" span {s['span_ms']:.0f} ms; the commit thread: inserts + signature"
        f" {s['inserts_sign']:.0%}, COMMIT {s['commit']:.0%} (median {s['commit_p50_ms']:.2f} ms;"
        f" {s['slow_commits']} over 4x it and 4 ms, {s['slow_excess']:.0%} of the span beyond"
        f" the median), answering {s['answer']:.0%}, after the answers {s['after']:.0%},"
        f" idle {s['idle']:.0%}; the reading thread prepares {s['prepare']:.0%}"
    )
