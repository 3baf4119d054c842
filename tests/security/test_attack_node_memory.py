"""The node's memory holds what the vault opened (and the keys that open it): no other
process of its user may read it, and no crash writes it to a core file.

Before, `donjon serve` was dumpable with the core size it was started with: any process
of the node's user (a CLI, a script, a compromised tool beside it) read every opened
secret value out of /proc/PID/mem, and a crash of the node, on a host whose service
manager allows core files, wrote them, the master key's subkeys included, to disk. The
audit writer (it holds the log's signing seed) was the same. Now both are made
non-dumpable (prctl PR_SET_DUMPABLE 0) with a core size of 0 as they start.
"""

from __future__ import annotations

import os
import resource
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.bundle import build_bundle
from harness import LiveNode, start_node

#: Another process of the node's user, without capabilities (as the user's other
#: programs are; a test run as root drops them), looking for `argv[2]` in the writable
#: memory of process `argv[1]`: prints "found", "absent" or "refused".
_READER = """
import sys
pid, needle = sys.argv[1], sys.argv[2].encode()
try:
    maps = open(f"/proc/{pid}/maps").read().splitlines()
    mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
except PermissionError:
    print("refused")
    sys.exit()
for line in maps:
    span, perms = line.split()[:2]
    if perms.startswith("rw"):
        start, end = (int(x, 16) for x in span.split("-"))
        for at in range(start, end, 1 << 24):
            try:
                mem.seek(at)
                if needle in mem.read(min(1 << 24, end - at)):
                    print("found")
                    sys.exit()
            except OSError:
                break
print("absent")
"""


def _read_memory(pid: int, needle: str) -> str:
    """What `_READER` finds in `pid`'s memory."""
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    out = subprocess.run(
        [*drop, sys.executable, "-I", "-c", _READER, str(pid), needle],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


def _core_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4]
    raise AssertionError("no core size in /proc/PID/limits")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _audit_writer(pid: int) -> int:
    for child in _children(pid):
        if b"donjon.audit.writer" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    pytest.skip("this node runs no audit writer process")


@pytest.fixture
def core_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node started as a service manager allowing core files would start it."""
    before = resource.getrlimit(resource.RLIMIT_CORE)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
    except (ValueError, OSError):
        if before[1] == 0:
            pytest.skip("core files are off for this user: the node could write none")
        resource.setrlimit(resource.RLIMIT_CORE, (before[1], before[1]))
    try:
        live = start_node(tmp_path / "data")
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, before)
    try:
        yield live
    finally:
        live.stop()


def test_another_process_cannot_read_an_opened_secret_from_the_node(
    core_node: LiveNode, tmp_path: Path
) -> None:
    """After a call opened a secret, the node's memory cannot be read for its value by
    another process of its user, and neither the node nor its audit writer may write a
    core file (where the test runs as root, the reader is refused for want of the node's
    capabilities even before: the core sizes are what fails there)."""
    node = core_node
    value = f"DJMEM{secrets.token_hex(12)}"
    with node.client() as c:
        assert c.post("/v1/secrets/memory-s", json={"value": value}).status_code == 201
    root = tmp_path / "memory"
    root.mkdir()
    (root / "main.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    (root / "donjon.yaml").write_text(
        "name: memory\nhandler: main.handler\npermissions: {secrets: [memory-s]}\n"
    )
    _, archive = build_bundle(root)
    with node.client() as c:
        assert c.post("/v1/functions", content=archive).status_code == 201
    assert node.invoke("memory", {}).status_code == 200  # opened, and kept opened
    pid = node.proc.pid
    assert _core_limit(pid) == "0"
    assert _read_memory(pid, value) == "refused"
    writer = _audit_writer(pid)
    assert _core_limit(writer) == "0"
    assert _read_memory(writer, "DJ") == "refused"
