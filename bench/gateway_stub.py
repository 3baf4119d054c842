"""`donjon serve` with the audit writer and the sandbox set aside: for measurement only.

Used by `gateway_cpu.py load` to measure the gateway's own CPU per request (as the
ablations in docs/performance.md "Warm path" do). `AuditLog.record` hands a one-record
batch to the log's listeners on the loop's thread (the monitor and the metrics still
see every call) and writes nothing; `SandboxPool.invoke` answers `bench-warm`'s calls
with a fixed result (other functions run for real, so deploys still start sandboxes).
Never a way to serve: nothing here is durable or isolated.

With `DONJON_BENCH_PROFILE=FILE` in its environment (`gateway_calls.py`), SIGUSR1
starts a cProfile of the loop's thread and SIGUSR2 stops it and writes its stats to
FILE: the window is the caller's, not the server's start-up or its deploys.

With `--under-valgrind` (first argument; `gateway_instr.py`) the node's sandbox probe
and its seccomp filters are set aside too, and a deploy starts no sandbox: valgrind
runs neither seccomp(2) nor Landlock's calls, and the bench's calls never reach a
sandbox.
"""

from __future__ import annotations

import cProfile
import itertools
import os
import signal
import sys
import time
from typing import Any

from donjon.audit import log as audit_log
from donjon.cli import main
from donjon.sandbox import pool as sandbox_pool
from donjon.sandbox.replies import CallResult

_seq = itertools.count(1_000_000_000)
_real_invoke = sandbox_pool.SandboxPool.invoke


async def _record(self: Any, event: Any, log: Any = None) -> None:
    record = audit_log.CommittedRecord(next(_seq), time.time(), event)
    batch = audit_log.CommittedBatch((record,), 0.0)
    for listener in self._listeners:
        listener(batch)


async def _invoke(
    self: Any,
    config: Any,
    meta: bytes,
    event: bytes,
    timeout_s: float,
    subcalls: Any = None,
    request_id: str = "",
    runs_on: Any = None,
) -> Any:
    if config.function != "bench-warm":
        return await _real_invoke(
            self, config, meta, event, timeout_s, subcalls, request_id, runs_on
        )
    return CallResult(b'{"hello": "x"}', "")


audit_log.AuditLog.record = _record  # type: ignore[method-assign]  # measurement only: the part set aside
sandbox_pool.SandboxPool.invoke = _invoke  # type: ignore[method-assign]  # measurement only: the part set aside


def _no_probe(*args: Any) -> None:
    return None


async def _no_prestart(*args: Any) -> None:
    return None


def _profile_on_signals(out: str) -> None:
    """SIGUSR1 starts a profile of the main thread (the loop's), SIGUSR2 writes it to `out`."""
    profiler = cProfile.Profile()

    def start(signum: int, frame: Any) -> None:
        profiler.enable()

    def stop(signum: int, frame: Any) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if __name__ == "__main__":
    if os.environ.get("DONJON_BENCH_PROFILE"):
        _profile_on_signals(os.environ["DONJON_BENCH_PROFILE"])
    if sys.argv[1:2] == ["--under-valgrind"]:
        from donjon.gateway import node as gateway_node

        del sys.argv[1]
        # Measurement only: the node's own names for them, replaced (mypy: a patched name).
        node_, pool_ = gateway_node, sandbox_pool.SandboxPool
        node_.check_sandbox = _no_probe  # type: ignore[attr-defined,assignment]  # patched
        node_.compile_filters = _no_probe  # type: ignore[attr-defined,assignment]  # patched
        pool_.prestart = _no_prestart  # type: ignore[method-assign,assignment]  # patched
    main()
