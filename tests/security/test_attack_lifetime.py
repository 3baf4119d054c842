"""Invariant 3 and 5, the process model: nothing of a call outlives it, nothing runs between
calls, and the supervisor keeps no privilege, name or log beyond what it needs."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgroupfs import children, descendants
from donjon.bundle import build_bundle
from harness import FUNCTIONS, LiveNode, free_port
from sec_support import ATTACKERS, Ready, attack, bundle_dir, process_names

_TICK = os.sysconf("SC_CLK_TCK")
#: Well past any deadline here (timeout_s 10 plus the gateway's grace) on a loaded machine.
_SETTLE_S = 45.0
#: The cap on what one call stores in the invocation log (docs/security.md).
_LOG_CAP = 16 * 1024

_CHAIN = """\
import ctypes
import os
import time

MARK = {mark!r}
_libc = ctypes.CDLL(None)


def _chain():
    # Each link burns a little CPU, forks the next link and exits: RLIMIT_CPU,
    # counted per process, starts again at every link.
    _libc.prctl(15, MARK.encode(), 0, 0, 0)
    end = time.monotonic() + 75
    while time.monotonic() < end:
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
        if os.fork() != 0:
            os._exit(0)
    os._exit(0)


if os.fork() == 0:
    _chain()


def handler(event, context):
    return {{"ok": True}}
"""


#: The same chain, started after switching off the runtime's own clean-up.
_CHAIN_TAMPERED = (
    """\
import sys

for _name, _module in list(sys.modules.items()):
    if _name.startswith("donjon_runtime") and hasattr(_module, "end_leftovers"):
        _module.end_leftovers = lambda: None
"""
    + _CHAIN
)


#: An import that says "ready" itself, then starts the chain once it is idle: from a
#: SIGALRM handler, meant to run while the worker waits (a warm worker may keep no
#: thread). Since 2026-12-06 a ready worker waits with its signals blocked, so it never
#: does (`test_timer_armed_at_import_never_runs_before_a_call`).
_CHAIN_LATER = """\
import json
import os
import signal
import sys
import time

for _name, _module in list(sys.modules.items()):
    if _name.startswith("donjon_runtime") and hasattr(_module, "end_leftovers"):
        _module.end_leftovers = lambda: None
os.write(3, json.dumps({{"op": "ready", "caps": 0}}).encode())


def _later(*args):
    if os.fork() == 0:
        _chain()


signal.signal(signal.SIGALRM, _later)
signal.alarm(2)
""" + _CHAIN.replace("if os.fork() == 0:\n    _chain()\n", "")
#: The same from a thread, which a one-call worker's import may leave (a warm one's
#: is refused at deploy: tests/security/test_attack_warm_deadline.py).
_CHAIN_LATER_THREAD = _CHAIN_LATER.replace(
    "signal.signal(signal.SIGALRM, _later)\nsignal.alarm(2)\n",
    "import threading\n\nthreading.Timer(2, _later).start()\n",
)


def _named(name: str) -> list[int]:
    return [pid for pid, comm in process_names().items() if comm == name]


def _wait_gone(name: str, within_s: float = _SETTLE_S) -> list[int]:
    """Wait (bounded) until no host process is named `name`; what is left at the end."""
    deadline = time.monotonic() + within_s
    left = _named(name)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _named(name)
    return left


def _sandbox_roots(node: LiveNode, digest: str) -> list[int]:
    """The host pids of the sandboxes (bwrap) the node runs for the bundle `digest`."""
    roots = []
    for pid in children(node.proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if digest.encode() in cmdline:
            roots.append(pid)
    return roots


def _cpu_s(pid: int) -> float:
    """CPU of `pid` and of its children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / _TICK


def _runtime_pids(node: LiveNode, fn: str) -> list[int]:
    digest = bundle_dir(node, fn).name
    return [
        pid
        for root in _sandbox_roots(node, digest)
        for pid in descendants(root)
        if b"donjon_runtime/boot.py" in _cmdline(pid)
    ]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@ATTACKERS
def test_call_that_answers_early_and_lingers_leaves_no_process(node: LiveNode, fn: str) -> None:
    """A call that clears PDEATHSIG, writes its own reply and keeps children running ends whole."""
    name = f"lg-{secrets.token_hex(4)}"
    port = free_port()
    r = node.invoke(fn, {"op": "linger", "name": name, "port": port, "seconds": 75})
    assert r.status_code in (200, 504), r.text
    left = _wait_gone(name)
    assert left == [], f"{len(left)} processes of the call still run"
    answer = attack(node, fn, "loopback_answers", port=port)
    assert answer["answered"] is None, answer
    assert node.invoke(fn, {"op": "echo"}).status_code == 200


@pytest.fixture(params=["invocation", "warm"])
def chain_function(
    node: LiveNode,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    started: Ready,
) -> Iterator[tuple[str, str]]:
    """A function whose import starts a chain of CPU-burning processes, deployed (and removed);
    from a warm start, a call has been served (and, in `invocation`, the next spare imported)."""
    mode = request.param
    mark = f"ch-{secrets.token_hex(4)}"
    fn = f"sec-chain-{mode}"
    (tmp_path / "main.py").write_text(_CHAIN.format(mark=mark))
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: {mode}\n"
        # These imports fork on purpose: what is tested is what becomes of the processes.
        "policies: {child_processes: allow}\n"
    )
    node.deploy(tmp_path)
    try:
        yield started(fn, just_deployed=True), mark
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_import_that_forks_a_cpu_chain_is_stopped(
    node: LiveNode, chain_function: tuple[str, str]
) -> None:
    """A spare (or idle warm worker) whose import forks a CPU-burning chain does not keep it."""
    fn, mark = chain_function
    left = _wait_gone(mark)
    digest = bundle_dir(node, fn).name
    used = sum(_cpu_s(pid) for root in _sandbox_roots(node, digest) for pid in descendants(root))
    assert left == [], f"the chain still runs ({len(left)} links) {used:.1f}s of CPU later"
    assert used < 20.0, f"the idle sandbox used {used:.1f}s of CPU"
    assert node.invoke(fn, {}).status_code == 200


@ATTACKERS
def test_supervisor_holds_no_ambient_capability(node: LiveNode, fn: str) -> None:
    """Seen from the host, no process of the sandbox runtime has an ambient capability."""
    attack(node, fn, "echo")
    pids = _runtime_pids(node, fn)
    assert pids
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        amb = next(line.split()[1] for line in status.splitlines() if line.startswith("CapAmb"))
        assert int(amb, 16) == 0, (pid, amb)


@ATTACKERS
def test_proc_self_cgroup_names_no_host_path(node: LiveNode, fn: str) -> None:
    """/proc/self/cgroup inside a function shows `/` only: no gateway pid, no host path."""
    text = attack(node, fn, "cgroup")["cgroup"]
    for line in text.splitlines():
        assert line.rsplit(":", 1)[1] == "/", text
    assert str(node.proc.pid) not in text


@ATTACKERS
def test_failing_call_that_prints_a_megabyte_stores_at_most_the_cap(
    node: LiveNode, fn: str
) -> None:
    """A failing call's stored log is capped; its trace is kept and the cut is marked."""
    r = node.invoke(fn, {"op": "fail_loudly", "kb": 1024})
    assert r.status_code == 500, r.text
    request_id = r.json()["request_id"]
    with node.client() as c:
        rows = c.get(f"/v1/functions/{fn}/logs", params={"n": 50}).json()
    entry = next(row for row in rows if row["request_id"] == request_id)
    output = entry["output"]
    assert len(output.encode()) <= _LOG_CAP, len(output.encode())
    assert "RuntimeError: failing after printing" in output
    assert "Traceback" in output
    assert "dropped" in output


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_import_that_disables_the_clean_up_and_forks_is_refused(
    node: LiveNode, tmp_path: Path, mode: str
) -> None:
    """An import that switches off the runtime's clean-up, then forks a chain, is not kept."""
    mark = f"ct-{secrets.token_hex(4)}"
    fn = f"sec-chain-tampered-{mode}"
    (tmp_path / "main.py").write_text(_CHAIN_TAMPERED.format(mark=mark))
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: {mode}\n"
        # These imports fork on purpose: what is tested is what becomes of the processes.
        "policies: {child_processes: allow}\n"
    )
    _, archive = build_bundle(tmp_path)
    try:
        with node.client() as c:
            r = c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )
        left = _wait_gone(mark)
        assert left == [], f"the chain still runs ({len(left)} links); deploy said {r.status_code}"
        assert r.status_code == 422, r.text
        assert "the handler's import left processes running" in r.text
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")


@pytest.fixture(scope="module", params=["invocation", "warm"])
def one_at_a_time(
    node: LiveNode,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    sources: dict[str, Path],
) -> str:
    """sec-attack with `limits.concurrency: 1`, in each isolation mode."""
    fn = f"sec-attack-one-{request.param}"
    dest = tmp_path_factory.mktemp(fn)
    shutil.copytree(FUNCTIONS / "sec-attack", dest, dirs_exist_ok=True)
    manifest = (dest / "donjon.yaml").read_text().replace("name: sec-attack", f"name: {fn}")
    manifest = manifest.replace("limits: {concurrency: 4}", "limits: {concurrency: 1}")
    (dest / "donjon.yaml").write_text(manifest + f"isolation: {request.param}\n")
    node.deploy(dest)
    sources[fn] = dest
    return fn


def test_an_early_answer_does_not_free_the_calls_slot(
    node: LiveNode, one_at_a_time: str, started: Ready
) -> None:
    """While a call's processes run after its answer, its concurrency slot stays taken."""
    fn = started(one_at_a_time)
    name = f"sl-{secrets.token_hex(4)}"
    r = node.invoke(fn, {"op": "linger", "name": name, "seconds": 75})
    assert r.status_code in (200, 504), r.text
    deadline = time.monotonic() + _SETTLE_S
    while time.monotonic() < deadline:
        r = node.invoke(fn, {"op": "echo"})
        if r.status_code == 200:
            assert _named(name) == [], "a call ran while the previous one's processes still ran"
            return
        assert r.status_code == 429, r.text
    raise AssertionError("the function never served again")


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_timer_armed_at_import_never_runs_before_a_call(
    node: LiveNode, tmp_path: Path, mode: str
) -> None:
    """A worker that forges its own "ready" and arms a timer to start a CPU chain while it
    is idle never runs the timer's handler: it waits for its call with signals blocked.
    (Before, the chain started 2 s after the import and the supervisor had to kill it.)"""
    mark = f"ct-{secrets.token_hex(4)}"
    fn = f"sec-chain-timer-{mode}"
    (tmp_path / "main.py").write_text(_CHAIN_LATER.format(mark=mark))
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: {mode}\n"
        "policies: {child_processes: allow}\n"
    )
    try:
        node.deploy(tmp_path)
        until = time.monotonic() + 6  # three times the alarm's 2 s, looked at throughout
        while time.monotonic() < until:
            assert _named(mark) == [], "the timer's handler ran while the worker waited"
            time.sleep(0.05)
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")


def test_idle_worker_that_says_ready_early_then_forks_is_killed(
    node: LiveNode, tmp_path: Path
) -> None:
    """A worker that forges its own "ready", then starts a CPU chain while idle (from a
    thread its import left), is killed."""
    mode = "invocation"
    mark = f"cl-{secrets.token_hex(4)}"
    fn = f"sec-chain-later-{mode}"
    (tmp_path / "main.py").write_text(_CHAIN_LATER_THREAD.format(mark=mark))
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: {mode}\n"
        # These imports fork on purpose: what is tested is what becomes of the processes.
        "policies: {child_processes: allow}\n"
    )
    try:
        node.deploy(tmp_path)
        deadline = time.monotonic() + _SETTLE_S
        while not _named(mark) and time.monotonic() < deadline:
            time.sleep(0.05)  # the chain starts two seconds after the import
        assert _named(mark), "the chain never started: this test would prove nothing"
        left = _wait_gone(mark)
        assert left == [], f"the chain still runs ({len(left)} links)"
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")
