"""Measurement only: timestamps of the audit writer process's stages.

`bench/audit_split.py --stages` puts this directory on PYTHONPATH and names a file
in DONJON_BENCH_STAGES before it starts the writer; Python imports this module at
start in every process with that environment, and it hooks only the writer
(`python -m donjon.audit.writer`). It wraps, without changing what they do, the
commit thread's `Pipeline._commit` (start, end), `RawStatements.finish` (the head,
the checkpoint and COMMIT), `AuditLog.store` (returns after COMMIT),
`Pipeline._answer` and the reading thread's `Pipeline.submit` (prepare), and
appends the list of (stage, perf_counter, records) to the file when the pipeline
closes. Never installed by Donjon; a bench run only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

_STAGES: list[tuple[str, float, int]] = []


def _install(out: str) -> None:
    from donjon.audit import log as audit_log
    from donjon.audit import pipeline, rawsql

    pc, note = time.perf_counter, _STAGES.append
    klass = pipeline.Pipeline
    commit, answer, submit, close = klass._commit, klass._answer, klass.submit, klass.close
    finish, store = rawsql.RawStatements.finish, audit_log.AuditLog.store

    def _commit(self: Any, chunks: Any) -> None:
        note(("take", pc(), sum(c.count for c in chunks)))
        commit(self, chunks)
        note(("end", pc(), 0))

    def _answer(self: Any, *args: Any) -> None:
        answer(self, *args)
        note(("answered", pc(), 0))

    def _submit(self: Any, data: Any, *args: Any) -> None:
        note(("prepare", pc(), len(data)))
        submit(self, data, *args)
        note(("prepared", pc(), 0))

    def _finish(self: Any, *args: Any) -> None:
        note(("finish", pc(), 0))
        finish(self, *args)

    def _store(self: Any, chunks: Any) -> Any:
        checkpoint = store(self, chunks)
        note(("stored", pc(), 0))
        return checkpoint

    def _close(self: Any) -> None:
        close(self)
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(_STAGES) + "\n")

    hooks = (
        (klass, "_commit", _commit),
        (klass, "_answer", _answer),
        (klass, "submit", _submit),
        (klass, "close", _close),
        (rawsql.RawStatements, "finish", _finish),
        (audit_log.AuditLog, "store", _store),
    )
    for owner, name, hook in hooks:
        setattr(owner, name, hook)  # a wrapper of the method, measurement only


_out = os.environ.get("DONJON_BENCH_STAGES")
if _out and "donjon.audit.writer" in getattr(sys, "orig_argv", ()):
    _install(_out)
