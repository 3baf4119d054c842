"""The isolation floor of issue 14, point 2: one clone(2) with the namespaces Donjon requires.

Inside a bubblewrap sandbox like the functions' own (Donjon's profile, the same
host user, the sandbox's interpreter started `-I -S -B`, the runtime's imports
and the handler loaded so the process has the runtime's size), three loops of
`n` cycles each, three rounds, medians:

- clone floor: ONE `clone(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | SIGCHLD)`,
  the child `_exit(0)`s at once, the parent waits (raw syscall through a PyDLL,
  without the interpreter's at-fork work: the kernel's price);
- the same with `CLONE_NEWNET` too: a one-call worker also gets a network
  namespace of its own (issue 12), which the issue's floor leaves out;
- fork floor: `os.fork()` + `_exit` + waitpid, beside them.

Calls per second and milliseconds per cycle; report.py compares the pool's
invocation per call and the gateway's invocation rate with the clone floor.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sandboxes import _in_bwrap

from donjon.sandbox import SandboxHost

_SCRIPT = """\
import ctypes, importlib, json, os, resource, select, signal, socket, struct, sys, time
sys.path.insert(0, '')
import main
n = int(sys.argv[1])
NS = 0x20000000 | 0x00020000 | 0x08000000  # CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC
NET = 0x40000000
libc = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL, which the child then holds
nr = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
def clone(flags):
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(flags | signal.SIGCHLD),
                       None, None, None, ctypes.c_ulong(0))
    if pid == 0:
        os._exit(0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone")
    os.waitpid(pid, 0)
def fork(_flags):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
def loop(fn, flags):
    for _ in range(10):
        fn(flags)
    t = time.perf_counter()
    for _ in range(n):
        fn(flags)
    return (time.perf_counter() - t) / n
runs = {"clone_s": [], "clone_net_s": [], "fork_s": []}
for _ in range(3):
    runs["fork_s"].append(loop(fork, 0))
    runs["clone_s"].append(loop(clone, NS))
    runs["clone_net_s"].append(loop(clone, NS | NET))
print(json.dumps({k: sorted(v)[1] for k, v in runs.items()}))
"""


def clone_floor(host: SandboxHost, bundle: Path, n: int) -> dict[str, float]:
    """Seconds per cycle: clone (pid, mount, IPC), the same with a network namespace,
    and fork, each + `_exit` + waitpid, inside bwrap with Donjon's profile."""
    (bundle / "clone_floor.py").write_text(_SCRIPT)
    try:
        done = subprocess.run(
            _in_bwrap(host, bundle, ["/fn/clone_floor.py", str(n)]),
            cwd=bundle,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    finally:
        (bundle / "clone_floor.py").unlink()
    result: dict[str, float] = json.loads(done.stdout)
    return result
