"""Issue 14, point 3: the true cold start beside bubblewrap + the handler's import.

The true cold start is a call to a function that has no sandbox: the pool
makes its cgroup, starts bubblewrap (through setpriv, as the sandbox user),
the supervisor boots, its first worker confines itself and imports the
handler, and the call runs. Its floor is what the kernel and the interpreter
cost for the same sandbox with no Donjon code in it: bubblewrap started with
the function's own command line (`profile.bwrap_argv` for the same spec:
the same launcher, namespaces, mounts, tmpfs size and seccomp filter), running
`python -I -S -B -c 'import main'` from /fn instead of the runtime.

Both are timed from this process, one after the other in rounds (floor, warm,
invocation), so that the machine's load moves them alike; the figures are the
medians over the rounds. Beside the wall clock, the CPU each used, which the
machine's load moves much less: the floor's whole run (RUSAGE_CHILDREN), and
a warm cold start's sandbox processes from their spawn to the end of the
call (bubblewrap, the supervisor and the worker are all alive then: the sum
of their threads' run time in /proc/<pid>/task/*/schedstat).
"""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import sandboxes

from donjon.sandbox import SandboxHost, compile_filters
from donjon.sandbox.profile import SandboxSpec, bwrap_argv

__all__ = ["floor_argv", "run"]

_EVENT = b'{"name": "bench"}'
#: What the floor runs in place of the runtime (-I leaves /fn, the cwd, off sys.path).
_IMPORT_MAIN = "import sys; sys.path.insert(0, ''); import main"


def floor_argv(host: SandboxHost, spec: SandboxSpec) -> list[str]:
    """The function's own bwrap command line, running the handler's import instead of
    the runtime: everything up to the interpreter is `bwrap_argv`'s."""
    argv = bwrap_argv(spec, host, control_fd=0)
    at = len(argv) - 1 - argv[::-1].index(str(host.python))
    return [*argv[:at], str(host.python), "-I", "-S", "-B", "-c", _IMPORT_MAIN]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _descendants(pid: int) -> set[int]:
    """`pid` and every process under it (any thread's children), as /proc says now."""
    seen: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        seen.add(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split() if int(c) not in seen]
        except OSError:
            continue
    return seen


def _run_s(pids: set[int]) -> float:
    """CPU seconds the threads of `pids` have run (schedstat: nanoseconds)."""
    total = 0
    for pid in pids:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _floor_once(host: SandboxHost, bundle: Path, tmp_mb: int, function: str) -> tuple[float, float]:
    """Seconds for one run of the floor, seccomp filter and all: wall clock, and CPU."""
    seccomp_fd = compile_filters().sandbox_fd()
    try:
        spec = SandboxSpec(bundle=bundle, tmp_mb=tmp_mb, seccomp_fd=seccomp_fd, function=function)
        argv = floor_argv(host, spec)
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, pass_fds=(seccomp_fd,), timeout=60)
        return time.perf_counter() - t0, _children_cpu_s() - cpu0
    finally:
        os.close(seccomp_fd)


async def _rounds(host: SandboxHost, bundle: Path, rounds: int) -> dict[str, list[float]]:
    pool = sandboxes.make_pool(host)
    out: dict[str, list[float]] = {
        "floor_s": [],
        "warm_s": [],
        "invocation_s": [],
        "floor_cpu_s": [],
        "warm_cpu_s": [],
    }
    tmp_mb = sandboxes.config(bundle, "x", True).tmp_mb
    try:
        _floor_once(host, bundle, tmp_mb, "coldstart-floor")  # page cache, not measured
        for i in range(rounds + 1):  # round 0 warms the page cache and the pool's caches
            floor, floor_cpu = _floor_once(host, bundle, tmp_mb, f"coldstart-floor-{i}")
            times = {}
            for mode in ("warm", "invocation"):
                fn = f"cold-{mode[0]}-start-{i}"
                cfg = sandboxes.config(bundle, fn, mode == "warm")
                before = _descendants(os.getpid())
                t0 = time.perf_counter()
                await pool.invoke(cfg, sandboxes._meta(fn), _EVENT, 5)
                times[mode] = time.perf_counter() - t0
                if mode == "warm":  # an invocation's worker is gone by now, its CPU with it
                    times["warm_cpu"] = _run_s(_descendants(os.getpid()) - before)
                await pool.retire(fn)
            if i == 0:
                continue
            out["floor_s"].append(floor)
            out["warm_s"].append(times["warm"])
            out["invocation_s"].append(times["invocation"])
            out["floor_cpu_s"].append(floor_cpu)
            out["warm_cpu_s"].append(times["warm_cpu"])
    finally:
        await pool.close()
    return out


def run(host: SandboxHost, bundle: Path, rounds: int) -> dict[str, Any]:
    """The raw seconds of each round and their medians (`<name>_median_s`)."""
    raw = sandboxes.run_loop(lambda: _rounds(host, bundle, rounds))
    result: dict[str, Any] = dict(raw)
    for key, values in raw.items():
        result[key.removesuffix("_s") + "_median_s"] = statistics.median(values)
    return result


#: `--plain`: a handler that imports nothing (the bench handler imports typing, and so
#: its floor does: what the runtime imports beyond typing's own modules shows less there).
_PLAIN = "def handler(event, context):\n    return {'message': 'hello'}\n"

if __name__ == "__main__":  # a quick look on its own: python bench/coldstart.py [ROUNDS] [--plain]
    import json
    import sys
    import tempfile

    args = [a for a in sys.argv[1:] if a != "--plain"]
    with tempfile.TemporaryDirectory(prefix="donjon-cold-") as tmp:
        os.chmod(tmp, 0o755)
        bundle = sandboxes.write_bundle(Path(tmp), "coldstart", "warm")
        if "--plain" in sys.argv[1:]:
            (bundle / "main.py").write_text(_PLAIN)
        compileall.compile_dir(bundle, quiet=1)  # as a deploy does
        bundle = sandboxes.copy_bundle(bundle, Path(tmp), "deployed")
        h = sandboxes.make_host(Path(tmp) / "data")
        try:
            res = run(h, bundle, int(args[0]) if args else 5)
        finally:
            sandboxes.forget_host(h)
    print(json.dumps({k: v for k, v in res.items() if k.endswith("median_s")}, indent=1))
