"""Measurements of the sandbox side: the pool driven directly, the floors, memory.

The floors are what the machine can do at best with the interpreter the
sandbox runs (`SandboxHost.python`, started `-I -S -B` as profile.py starts it):
- fork floor: a loop of os.fork() + child os._exit(0) + waitpid, in a process
  that has imported what the runtime imports and the handler (similar size);
- import floor: `python -I -S -B -c 'import main'` from the bundle dir (with
  '' put back on sys.path, since -I leaves the current directory out of it).
Each is also run inside bubblewrap with Donjon's own profile (and as the same
host user), to separate what the namespaces cost from what Donjon's code costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from donjon.config import load_settings
from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.profile import SandboxSpec, bwrap_argv

HANDLER = Path(__file__).parent / "handler" / "main.py"
T = TypeVar("T")

MANIFEST = """\
name: {name}
handler: main.handler
memory_mb: 64
timeout_s: 5
isolation: {isolation}
limits: {{concurrency: 8}}
input_schema:
  type: object
  properties:
    name: {{type: string, maxLength: 100}}
  additionalProperties: false
"""

_IMPORT_MAIN = "import sys; sys.path.insert(0, ''); import main"
_FORK_FLOOR = """\
import ctypes, importlib, json, os, resource, select, signal, socket, struct, sys, time
sys.path.insert(0, '')
import main
n = int(sys.argv[1])
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
t = time.perf_counter()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
per_call = (time.perf_counter() - t) / n
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
print(json.dumps({"per_call_s": per_call, "rss": rss}))
"""


def write_bundle(parent: Path, name: str, isolation: str) -> Path:
    """A function dir: the bench handler and a manifest (input schema on, like `hello`).

    Readable by everyone, so that a sandbox running as an unprivileged host user
    (Donjon as root starts bubblewrap as nobody) mounts it where it is.
    """
    d = parent / name
    d.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copy(HANDLER, d / "main.py")
    (d / "donjon.yaml").write_text(MANIFEST.format(name=name, isolation=isolation))
    return d


def copy_bundle(src: Path, parent: Path, name: str) -> Path:
    """A writable copy of a deployed bundle (its byte-compiled pycs included)."""
    dst = parent / name
    shutil.copytree(src, dst)
    for dirpath, _dirs, files in os.walk(dst):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    return dst


def run_loop(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on uvloop when installed, as uvicorn does for the gateway."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


# -- the pool, driven directly -------------------------------------------------------


def make_host(data_dir: Path) -> SandboxHost:
    """Who sandboxes run as and with which interpreter, as the gateway's node decides it."""
    return SandboxHost.detect(data_dir)


def forget_host(host: SandboxHost) -> None:
    """Remove what `make_host` staged for the sandbox user (a runtime copy, bundle links)."""
    if host.staging is not None:
        shutil.rmtree(host.staging, ignore_errors=True)


def node_staging(data_dir: Path) -> Path:
    """Where a node on `data_dir` stages for the sandbox user (host.py's rule)."""
    root = load_settings().sandbox.staging_dir
    return root / hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def make_pool(host: SandboxHost) -> SandboxPool:
    """A pool built the way the gateway's node builds it."""
    return SandboxPool(detect_resource_control(), compile_filters(), host)


def config(bundle: Path, function: str, warm: bool) -> InstanceConfig:
    """As registry.instance_config makes it for the bench manifest."""
    return InstanceConfig(
        function=function,
        version=1,
        bundle=bundle,
        module="main",
        handler="handler",
        warm=warm,
        memory_mb=64,
        tmp_mb=64,
        concurrency=1 if warm else 8,
    )


def _meta(function: str) -> bytes:
    return json.dumps(
        {
            "request_id": "0123456789abcdef",
            "function": function,
            "version": 1,
            "deadline": time.time() + 60,
            "principal": "key:bench",
        }
    ).encode()


async def _pool_calls(
    host: SandboxHost, bundle: Path, warm: bool, calls: int, colds: int
) -> dict[str, Any]:
    pool = make_pool(host)
    event = b'{"name": "bench"}'
    cold: list[float] = []
    try:
        for i in range(colds):  # fresh functions: each first call starts its sandbox
            fn = f"cold-{'w' if warm else 'i'}-{i}"
            t0 = time.perf_counter()
            await pool.invoke(config(bundle, fn, warm), _meta(fn), event, 5)
            cold.append(time.perf_counter() - t0)
            await pool.retire(fn)
        fn = f"seq-{'w' if warm else 'i'}"
        cfg, meta = config(bundle, fn, warm), _meta(fn)
        for _ in range(max(20, calls // 10)):  # warm-up, not measured
            await pool.invoke(cfg, meta, event, 5)
        per_call: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await pool.invoke(cfg, meta, event, 5)
            per_call.append(time.perf_counter() - t0)
        concurrent_rate = 0.0
        if not warm:  # an invocation sandbox serves several calls at once, up to the limit

            async def worker(n: int) -> None:
                for _ in range(n):
                    await pool.invoke(cfg, meta, event, 5)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(calls // 8) for _ in range(8)))
            concurrent_rate = 8 * (calls // 8) / (time.perf_counter() - t0)
    finally:
        await pool.close()
    return {"cold_s": cold, "per_call_s": per_call, "concurrent_rate": concurrent_rate}


def pool_calls(
    host: SandboxHost, bundle: Path, warm: bool, calls: int, colds: int
) -> dict[str, Any]:
    """Cold first calls on fresh functions, then `calls` sequential calls on one."""
    return run_loop(lambda: _pool_calls(host, bundle, warm, calls, colds))


# -- floors ----------------------------------------------------------------------------


def _in_bwrap(host: SandboxHost, bundle: Path, tail: list[str]) -> list[str]:
    """Donjon's own command line for `bundle`, running `python -I -S -B <tail>` in it."""
    argv = bwrap_argv(SandboxSpec(bundle=bundle, tmp_mb=8), host, control_fd=0)
    at = len(argv) - 1 - argv[::-1].index(str(host.python))
    return [*argv[:at], str(host.python), "-I", "-S", "-B", *tail]


def _bare(host: SandboxHost, tail: list[str]) -> list[str]:
    return [str(host.python), "-I", "-S", "-B", *tail]


def fork_floor(
    host: SandboxHost, bundle: Path, n: int, inside_bwrap: bool = False
) -> dict[str, float]:
    """Seconds per fork + _exit + waitpid, in a process of the runtime's size (and its RSS)."""
    (bundle / "fork_floor.py").write_text(_FORK_FLOOR)
    try:
        argv = (
            _in_bwrap(host, bundle, ["/fn/fork_floor.py", str(n)])
            if inside_bwrap
            else _bare(host, ["fork_floor.py", str(n)])
        )
        done = subprocess.run(
            argv, cwd=bundle, capture_output=True, text=True, timeout=120, check=True
        )
    finally:
        (bundle / "fork_floor.py").unlink()
    result: dict[str, float] = json.loads(done.stdout)
    return result


def import_floor(
    host: SandboxHost, bundle: Path, n: int, inside_bwrap: bool = False
) -> list[float]:
    """Wall seconds of `python -I -S -B -c 'import main'` (started from this process)."""
    argv = (
        _in_bwrap(host, bundle, ["-c", _IMPORT_MAIN])
        if inside_bwrap
        else _bare(host, ["-c", _IMPORT_MAIN])
    )
    subprocess.run(argv, cwd=bundle, check=True, capture_output=True)  # page cache, not measured
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=bundle, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


# -- memory and CPU of process trees ------------------------------------------------------


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children(pid)
    return out


def smaps(pid: int) -> dict[str, int] | None:
    """Bytes of Rss, Pss and USS (private clean + dirty) of one process; None once gone."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:  # a call's process that ended between the walk and the read
        return None
    return {
        "rss": fields.get("Rss", 0),
        "pss": fields.get("Pss", 0),
        "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def instance_roots(server_pid: int, marker: str) -> list[int]:
    """The outer bwrap of each sandbox whose command line holds `marker` (a bundle digest)."""
    return [
        pid
        for pid in children(server_pid)
        if cmdline(pid).startswith(("bwrap", "setpriv")) and marker in cmdline(pid)
    ]


def pythons(root: int) -> list[int]:
    """The interpreters in a sandbox's tree (bwrap's own processes left out)."""
    return [pid for pid in tree(root) if "python" in cmdline(pid).split(" ")[0]]


def tree_memory(root: int) -> dict[str, Any]:
    """Rss/Pss/USS summed over a sandbox's processes, and over its interpreters alone."""
    per = {pid: m for pid in tree(root) if (m := smaps(pid)) is not None}
    total = {k: sum(m[k] for m in per.values()) for k in ("rss", "pss", "uss")}
    py = [per[p] for p in pythons(root) if p in per]
    interpreters = {k: sum(m[k] for m in py) for k in ("rss", "pss", "uss")}
    return {
        "total": total,
        "interpreters": interpreters,
        "n_interpreters": len(py),
        "largest_interpreter_rss": max((m["rss"] for m in py), default=0),
        "processes": len(per),
    }


def bare_memory(host: SandboxHost, bundle: Path) -> dict[str, int]:
    """A bare interpreter (same binary and flags) with the handler imported, idle."""
    code = _IMPORT_MAIN + "; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        _bare(host, ["-c", code]), cwd=bundle, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        memory = smaps(proc.pid)
        assert memory is not None
        return memory
    finally:
        proc.kill()
        proc.wait()


_CGROUP_BASES = (
    Path("/sys/fs/cgroup/donjon"),
    Path("/sys/fs/cgroup/memory/donjon"),
    Path("/sys/fs/cgroup/pids/donjon"),
    Path("/sys/fs/cgroup/cpu/donjon"),
)
#: ResourceControl.create names a cgroup label-tag; the bench's functions are named so.
_CGROUP_NAME = re.compile(r"^(cold-|seq-|bench-).*-v\d+-[0-9a-f]{12}$")


def leaked_cgroups() -> list[Path]:
    """Empty cgroups of the bench's own functions, left behind once their sandboxes ended."""
    out = []
    for base in _CGROUP_BASES:
        if not base.is_dir():
            continue
        for d in base.iterdir():
            if not (d.is_dir() and _CGROUP_NAME.search(d.name)):
                continue
            try:
                if not (d / "cgroup.procs").read_text().split():
                    out.append(d)
            except OSError:
                continue
    return out


def remove_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds used by `root` and everything under it (reaped children included)."""
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / _TICK


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
