"""Invariant 3 in `invocation` isolation: nothing of one call is observable by the next:
not its /tmp, its globals, its descriptors, its files anywhere else, or its processes."""

from __future__ import annotations

import secrets
import time

from harness import LiveNode
from sec_support import Ready, attack, process_names

_TRACES = [
    "/tmp/sec-trace",
    "/dev/shm/sec-trace",
    "/sec-trace",
    "/opt/sec-trace",
    "/root/sec-trace",
    "/dev/sec-trace",
]


def _named(name: str) -> list[int]:
    """Host pids of processes called `name`."""
    return [pid for pid, comm in process_names().items() if comm == name]


def test_tmp_files_do_not_survive_the_call(node: LiveNode, started: Ready) -> None:
    """A file the first call leaves in /tmp is gone for the next call."""
    started("probe")
    first = node.invoke("probe", {"op": "write_tmp", "name": "sec-first", "data": "secret"})
    assert first.json()["tmp"] == ["sec-first"]
    second = node.invoke("probe", {"op": "write_tmp", "name": "sec-second"})
    assert second.json()["tmp"] == ["sec-second"]


def test_module_globals_do_not_survive_the_call(node: LiveNode, started: Ready) -> None:
    """Each call starts from the module as imported: a global counter never gets past 1."""
    started("probe")
    started("sec-attack")
    counts = [node.invoke("probe", {"op": "state"}).json()["calls"] for _ in range(3)]
    assert counts == [1, 1, 1]
    marker = secrets.token_hex(8)
    attack(node, "sec-attack", "keep_state", marker=marker, paths=[])
    assert attack(node, "sec-attack", "find_state", paths=[])["global"] is None


def test_descriptors_do_not_survive_the_call(node: LiveNode, started: Ready) -> None:
    """A descriptor the first call opens (and marks inheritable) is not open in the next one."""
    started("sec-attack")
    kept = attack(node, "sec-attack", "keep_state", marker="fd", paths=[])
    after = attack(node, "sec-attack", "find_state", paths=[])
    assert "/fn/main.py" not in after["fds"].values()
    assert after["fds"].get(str(kept["fd"])) != "/fn/main.py"


def test_files_outside_tmp_do_not_survive_the_call(node: LiveNode, started: Ready) -> None:
    """What the first call managed to write anywhere (/dev/shm, /, /opt...) is gone next call."""
    started("sec-attack")
    marker = secrets.token_hex(8)
    attack(node, "sec-attack", "keep_state", marker=marker, paths=_TRACES)
    found = attack(node, "sec-attack", "find_state", paths=_TRACES)["files"]
    assert found == {}


def test_background_process_does_not_survive_the_call(node: LiveNode, started: Ready) -> None:
    """A child the handler forks and leaves running is gone by the next call.

    Each call runs as pid 1 of its own pid namespace, so pids differ between
    the calls' views: the child is found by the unique name it gives itself.
    """
    started("sec-attack")
    name = "sec" + secrets.token_hex(4)
    attack(node, "sec-attack", "spawn_orphan", name=name, sleep=30)
    deadline = time.monotonic() + 5
    while _named(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = attack(node, "sec-attack", "processes")["comms"]
    assert name not in seen.values()


def test_forked_grandchild_is_killed_when_the_call_ends(node: LiveNode, started: Ready) -> None:
    """A double-forked, setsid'd grandchild that ignores SIGTERM dies with its call.

    Checked from the host, by the unique name the grandchild gives itself.
    """
    started("sec-attack")
    name = "sec" + secrets.token_hex(4)
    orphan = attack(node, "sec-attack", "spawn_orphan", name=name, sleep=30)["orphan"]
    assert orphan > 0
    deadline = time.monotonic() + 5  # the kill may land just after the answer: wait, not time
    while _named(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _named(name) == []
    seen = attack(node, "sec-attack", "processes")["comms"]
    assert name not in seen.values()
