"""Optional sampling profiles (py-spy) of the server and its sandbox under load.

Used by `bench_invoke.py --profile DIR` in a separate, unmeasured phase: the
sampler takes CPU from the two cores, so its figures are never the ones in
the table. py-spy is found on PATH or beside the interpreter, never installed
here (`pip install py-spy` into the venv; it needs root or ptrace rights).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_SITE = re.compile(r" \(/\S*?/(?:site-packages|src|lib/python3\.\d+)/")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start sampling `pid` (all threads, without pausing it) into a collapsed-stack file."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, int(seconds))),
            "-r",
            "200",
            "--threads",
            "--nonblocking",
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summary(path: Path, top: int = 12) -> str:
    """Per-thread shares, and the functions with the most self and inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        names = [_SITE.sub(" (", f) for f in frames[1:]]
        if names:
            own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples"]
    lines += [f"  thread {100 * n / total:5.1f}%  {t}" for t, n in threads.most_common()]
    lines.append("  self:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive (below the event loop / thread entry):")
    skip = (
        "Runner.run",
        "_run_module",
        "_run_code",
        "<module>",
        "Thread._bootstrap",
        "Thread.run",
        "Command.",
        "Group.invoke",
        "Context.invoke",
        "main (",
        "serve (",
        "Server.run",
        "asyncio_run",
    )
    shown = [(f, n) for f, n in inclusive.most_common(top * 4) if not f.startswith(skip)]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in shown[:top]]
    return "\n".join(lines)
