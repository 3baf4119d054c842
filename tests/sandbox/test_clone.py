"""The runtime's one-clone helper (runtime/clone.py): namespaces, fork semantics, refusals.

Each case runs in a fresh interpreter: the helper refuses a process with more
than one thread, and pytest's may have some.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

_CHILDREN = """
import json, os, random, sys
from donjon.sandbox.runtime import clone
flags = clone.CLONE_NEWPID | clone.CLONE_NEWNS | clone.CLONE_NEWIPC
out = []
for _ in range(2):
    r, w = os.pipe()
    try:
        pid = clone.clone_process(flags)
    except PermissionError:
        print(json.dumps({"skip": "no CAP_SYS_ADMIN here"}))
        sys.exit(0)
    if pid == 0:
        os.close(r)
        seen = {
            "pid": os.getpid(),
            "ipc": os.readlink("/proc/self/ns/ipc"),
            "mnt": os.readlink("/proc/self/ns/mnt"),
            "random": random.random(),
        }
        os.write(w, json.dumps(seen).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    out.append({"status": status, **json.loads(data)})
parent = {"ipc": os.readlink("/proc/self/ns/ipc"), "mnt": os.readlink("/proc/self/ns/mnt")}
print(json.dumps({"children": out, "parent": parent}))
"""

_REFUSALS = """
import json, threading
from donjon.sandbox.runtime import clone
said = {}
for name, flags in (("user", 0x10000000), ("vm", 0x00000100), ("thread", 0x00010000)):
    try:
        clone.clone_process(flags)
        said[name] = "cloned"
    except ValueError:
        said[name] = "refused"
stop = threading.Event()
t = threading.Thread(target=stop.wait)
t.start()
try:
    clone.clone_process(clone.CLONE_NEWIPC)
    said["threaded"] = "cloned"
except OSError:
    said["threaded"] = "refused"
finally:
    stop.set()
    t.join()
print(json.dumps(said))
"""


def _run(code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def children() -> dict[str, Any]:
    result = _run(_CHILDREN)
    if "skip" in result:
        pytest.skip(result["skip"])
    return result


def test_clone_child_is_pid_1_of_a_new_pid_namespace(children: dict[str, Any]) -> None:
    """A child made by one clone with CLONE_NEWPID sees itself as pid 1, and exits 0."""
    assert [c["pid"] for c in children["children"]] == [1, 1]
    assert [c["status"] for c in children["children"]] == [0, 0]


def test_clone_child_has_ipc_and_mount_namespaces_of_its_own(children: dict[str, Any]) -> None:
    """Each child has IPC and mount namespaces other than its parent's (a namespace's
    number may come again once a child is gone, so the children are not compared)."""
    for child in children["children"]:
        assert child["ipc"] != children["parent"]["ipc"]
        assert child["mnt"] != children["parent"]["mnt"]


def test_clone_runs_the_interpreters_at_fork_hooks(children: dict[str, Any]) -> None:
    """random reseeds in each child (os.register_at_fork ran): two children draw differently."""
    first, second = (c["random"] for c in children["children"])
    assert first != second


@pytest.mark.slow
def test_clone_refuses_flags_that_share_or_widen() -> None:
    """CLONE_NEWUSER, CLONE_VM and CLONE_THREAD are refused before any system call."""
    said = _run(_REFUSALS)
    assert said["user"] == said["vm"] == said["thread"] == "refused"


@pytest.mark.slow
def test_clone_refuses_a_threaded_process() -> None:
    """With a second thread running, the helper refuses: a raw clone is fork-safe only alone."""
    assert _run(_REFUSALS)["threaded"] == "refused"
