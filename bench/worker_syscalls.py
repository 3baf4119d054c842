"""The system calls a warm worker makes per call under load, by name (`strace -c`).

    .venv/bin/python bench/worker_syscalls.py [--seconds 4] [--connections 32]

Starts a real node (tests/harness.py, every control on) and the bench's warm
function as bench/warm_split.py does, loads it with wrk (bench/loadgen.py), and
meanwhile counts every system call of the function's warm workers with
`strace -c -f` for a few seconds. Each warm call ends with exactly one `sendto`
(the reply, runtime/call.py), so the counts are divided by the `sendto` count:
system calls per call, by name. strace slows the workers a lot; the counts per
call do not depend on it (its wall time figures do: they are not printed).
docs/performance.md, "The warm worker: one wake-up per call".
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import loadgen
import sandboxes
import warm_split

_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def counts(text: str) -> dict[str, tuple[int, int]]:
    """`strace -c`'s table: system call -> (calls, errors)."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m and m[3] != "total":
            out[m[3]] = (int(m[1]), int(m[2] or 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("strace"):
        raise SystemExit("strace is not installed")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load}")
    tmp = Path(tempfile.mkdtemp(prefix="workersys-"))
    tmp.chmod(0o755)  # bundles under it must be readable by the sandbox user
    (tmp / "node").mkdir()
    node, req, root = warm_split._node_target(tmp)
    try:
        loadgen.run(req, 8, 1)
        loadgen.run(req, args.connections, 1)  # the warm instances are started
        workers = [p for p, role in warm_split.roles(root).items() if role == "sandbox: worker"]
        loader = threading.Thread(
            target=loadgen.run, args=(req, args.connections, args.seconds + 2), daemon=True
        )
        loader.start()
        time.sleep(0.5)
        out = tmp / "strace.txt"
        trace = subprocess.Popen(
            ["strace", "-c", "-f", "-o", str(out), *(f"-p{p}" for p in workers)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(args.seconds)
        trace.send_signal(signal.SIGINT)
        trace.wait(30)
        loader.join()
        seen = counts(out.read_text())
    finally:
        node.stop()
        shutil.rmtree(sandboxes.node_staging(node.data_dir), ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    calls = seen.get("sendto", (0, 0))[0]
    print(f"{len(workers)} warm workers, {calls} calls traced; system calls per call:")
    for name, (n, errors) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
        failed = f" ({errors / max(1, calls):.2f} failed)" if errors else ""
        print(f"  {name:16} {n / max(1, calls):6.2f}{failed}")
    total = sum(n for n, _ in seen.values())
    print(f"  {'total':16} {total / max(1, calls):6.2f}")


if __name__ == "__main__":
    main()
