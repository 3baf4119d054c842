"""Invariant 3 under a deep review: concurrent calls cannot reach each other's processes
through /proc, abstract sockets or signals; one call's memory cannot take down its
sandbox; and no call can drain a kernel resource that the whole host shares."""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import LiveNode
from sec_support import Ready, attack, bundle_dir, in_both_modes

MODES = in_both_modes("sec-isolation")


def _host_pids(match: Callable[[bytes], bool]) -> list[int]:
    """Host pids whose command line matches."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if match(Path(f"/proc/{entry}/cmdline").read_bytes()):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _wait_for(what: Callable[[], Any], seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("the condition never came true")


def _in_background(
    node: LiveNode, fn: str, event: dict[str, Any]
) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    box: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", node.invoke(fn, event)))
    thread.start()
    return thread, box


def _two_calls(node: LiveNode, fn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Call B holds a secret /tmp file, an abstract socket and a sleeping subprocess;
    call A, concurrent, attacks every other process it can see. (A's result, B's result.)"""
    marker = secrets.token_hex(6)
    thread, box = _in_background(node, fn, {"op": "hold", "marker": marker, "seconds": 50})
    try:
        held = _wait_for(lambda: _host_pids(lambda c: f"hold-{marker}".encode() in c))
        a = attack(node, fn, "peek", marker=marker, wait_s=3)
    finally:
        for pid in _host_pids(lambda c: f"hold-{marker}".encode() in c):
            os.kill(pid, signal.SIGKILL)
        thread.join(90)
    assert held
    r = box["r"]
    assert r.status_code == 200, r.text
    b: dict[str, Any] = r.json()
    return a, b


@MODES
def test_cannot_see_another_calls_processes_in_proc(node: LiveNode, fn: str) -> None:
    """/proc lists no process of a concurrent call, nor the supervisor: not even the
    entries no ptrace check guards (cmdline, stat, status), which show what a process
    wrote over its arguments (a process title) and when it runs."""
    a, _ = _two_calls(node, fn)
    assert a["found"] == [], a
    assert a["results"] == {}, a


@MODES
def test_cannot_open_another_calls_proc_entries(node: LiveNode, fn: str) -> None:
    """/proc/<pid>/root, fd/1, environ and mem of every other process are refused to a call."""
    a, b = _two_calls(node, fn)
    opened = {
        pid: {
            k: v
            for k, v in r.items()
            if k in ("root", "plant", "fd1", "environ", "mem") and v == "ok"
        }
        for pid, r in a["results"].items()
    }
    assert {pid: o for pid, o in opened.items() if o} == {}, a["results"]
    assert b["planted_seen"] is False
    assert "FORGED" not in b["output"]


@MODES
def test_cannot_connect_to_another_calls_abstract_socket(node: LiveNode, fn: str) -> None:
    """An abstract unix socket one call listens on refuses a concurrent call."""
    a, b = _two_calls(node, fn)
    assert a["abstract"] != "ok"
    assert b["accepted"] == 0


@MODES
def test_cannot_signal_another_calls_processes(node: LiveNode, fn: str) -> None:
    """pidfd_send_signal(2) through /proc/<pid> of any process outside the call is refused."""
    a, _ = _two_calls(node, fn)
    sent = {pid: r for pid, r in a["results"].items() if r["pidfd_signal"] == "ok"}
    assert sent == {}, a["results"]


def _supervisors(node: LiveNode, fn: str) -> dict[int, int]:
    """{bwrap pid: supervisor pid} of every running sandbox of `fn`, read from the host."""
    digest = bundle_dir(node, fn).name.encode()
    out = {}
    for pid in _host_pids(lambda c: c.startswith(b"bwrap\0") and digest in c):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        if children:
            out[pid] = int(children[0])
    return out


def _host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


@MODES
def test_filling_kernel_buffers_ends_only_that_call(node: LiveNode, fn: str) -> None:
    """Socket buffers and memfds past the memory limit: that call gets the memory error,
    a concurrent call completes, and the sandbox's supervisor is the same process after."""
    marker = secrets.token_hex(6)
    thread, box = _in_background(node, fn, {"op": "hold", "marker": marker, "seconds": 50})
    try:
        _wait_for(lambda: _host_pids(lambda c: f"hold-{marker}".encode() in c))
        before = _supervisors(node, fn)
        r = node.invoke(fn, {"op": "fill", "mb": 700})
        after = _supervisors(node, fn)
    finally:
        for pid in _host_pids(lambda c: f"hold-{marker}".encode() in c):
            os.kill(pid, signal.SIGKILL)
        thread.join(90)
    assert r.status_code == 507, r.text
    assert box["r"].status_code == 200, box["r"].text
    assert before, "no sandbox found on the host"
    assert before.items() <= after.items(), (before, after)
    assert node.invoke(fn, {"op": "echo"}).status_code == 200


@MODES
def test_tcp_buffers_of_a_call_are_bounded_by_its_memory(node: LiveNode, fn: str) -> None:
    """Loopback TCP buffers nobody reads are charged to the call: it cannot queue 600 MB
    (function memory 64 MB) and draw the host's net.ipv4.tcp_mem down for everyone."""
    result = attack(node, fn, "tcp_fill", mb=600)
    assert result["held"] < 300 << 20, result


@MODES
def test_cannot_reserve_the_hosts_aio_events(node: LiveNode, fn: str) -> None:
    """io_setup(2), which draws on the host-wide fs.aio-max-nr, is refused."""
    assert attack(node, fn, "io_setup")["io_setup"] in ("EPERM", "ENOSYS")


@MODES
def test_cannot_open_a_pty(node: LiveNode, fn: str) -> None:
    """/dev/ptmx and /dev/pts/ptmx give no pty (the host has a fixed number of them)."""
    result = attack(node, fn, "ptys")
    assert not [path for path, got in result.items() if got.startswith(("pty", "opened"))], result


def test_inotify_instances_are_refused(node: LiveNode, started: Ready) -> None:
    """No call gets an inotify instance (EPERM at the first): none can drain the per-user
    counter of instances, nor watch the trees every sandbox shares
    (test_attack_inotify_shared_trees.py)."""
    started("sec-isolation")
    started("sec-isolation-warm")
    for fn in ("sec-isolation", "sec-isolation-warm"):
        assert attack(node, fn, "inotify", limit=4096) == {"count": 0, "stop": "EPERM"}


def test_two_functions_run_as_different_host_uids(node: LiveNode, started: Ready) -> None:
    """Seen from the host, two functions' sandboxes run as two different unprivileged uids."""
    started("sec-isolation")
    attack(node, "sec-isolation", "ids")
    assert node.invoke("sec-neighbour", {"paths": []}).status_code == 200
    ours = {_host_uid(p) for p in _supervisors(node, "sec-isolation").values()}
    theirs = {_host_uid(p) for p in _supervisors(node, "sec-neighbour").values()}
    assert ours and theirs
    assert not ours & theirs, (ours, theirs)
    assert 0 not in ours | theirs


def _twin_of(name: str) -> str:
    """A function name whose host uid, by the unkeyed hash of a name over the default range
    (100000-165535), is `name`'s: what a deployer could compute offline for any victim."""

    def public_uid(function: str) -> int:
        digest = hashlib.sha256(b"donjon-sandbox-uid\0" + function.encode()).digest()
        return 100000 + int.from_bytes(digest[:8], "big") % 65536

    target = public_uid(name)
    return next(f"uid-twin-{i}" for i in itertools.count() if public_uid(f"uid-twin-{i}") == target)


@pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes run as per-function uids under root")
def test_a_name_chosen_to_share_anothers_host_uid_does_not(node: LiveNode, tmp_path: Path) -> None:
    """A function named so that the public hash of its name gives another function's host
    uid still runs as a uid of its own: it cannot drain that function's per-user counters
    (inotify instances, pipe buffers, message queue bytes)."""
    twin = _twin_of("sec-neighbour")
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return {}\n")
    (tmp_path / "donjon.yaml").write_text(f"name: {twin}\nhandler: main.handler\n")
    node.deploy(tmp_path)
    assert node.invoke(twin, {}).status_code == 200
    assert node.invoke("sec-neighbour", {"paths": []}).status_code == 200
    ours = {_host_uid(p) for p in _supervisors(node, twin).values()}
    theirs = {_host_uid(p) for p in _supervisors(node, "sec-neighbour").values()}
    assert ours and theirs
    assert not ours & theirs, (twin, ours, theirs)
