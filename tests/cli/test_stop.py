"""`donjon serve` and `donjon up` stop cleanly and soon on SIGTERM and SIGINT.

Each test runs the real command as a process, sends the real signal and then
checks what a user would: the process ends without a traceback, and nothing it
started (the child server, the scan worker, the sandboxes) is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness import LiveNode, donjon_env, free_port, read_until_serving, start_node, start_up
from shed_support import wait_for_metric

#: Bounds on waiting, generous for a loaded 2-core machine; no test asserts a timing.
STOP_WAIT_S = 90


def _descendants(pid: int) -> dict[int, bytes]:
    """Every process below `pid`, with its command line (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: dict[int, bytes] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        todo.extend(children.get(child, []))
    return found


def _alive(processes: dict[int, bytes]) -> list[str]:
    alive = []
    for pid, cmdline in processes.items():
        try:
            same = Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline
        except OSError:
            continue
        if same:
            shown = cmdline.replace(bytes(1), b" ").decode(errors="replace")
            alive.append(f"{pid}: {shown}")
    return alive


def _wait_gone(processes: dict[int, bytes]) -> list[str]:
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(processes)


def _sleeper(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(
        "name: sleeper\nhandler: main.handler\ntimeout_s: 600\nisolation: warm\n"
    )
    (root / "main.py").write_text(
        "import time\n\n\ndef handler(event, context):\n"
        "    time.sleep(float(event.get('s', 0)))\n    return {'slept': event.get('s', 0)}\n"
    )
    return root


def _start_call(node: LiveNode, seconds: float, answers: list[int]) -> threading.Thread:
    """A call in flight while the node is told to stop; its status goes to `answers`."""

    def call() -> None:
        with contextlib.suppress(httpx.HTTPError):
            answers.append(node.invoke("sleeper", {"s": seconds}).status_code)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_on_signal_with_a_call_in_flight(tmp_path: Path, sig: signal.Signals) -> None:
    """A signal ends serve within its grace period even mid-call: no traceback, no sandbox left."""
    node = start_node(tmp_path / "data", {"DONJON_SHUTDOWN_GRACE_S": "3"})
    try:
        node.deploy(_sleeper(tmp_path / "sleeper"))
        assert node.invoke("sleeper", {"s": 0}).status_code == 200
        answers: list[int] = []
        call = _start_call(node, 500, answers)
        # The call is in the sandbox (not still on its way: the sandbox of the first
        # call is already there, so only its busy state says the call arrived).
        wait_for_metric(node, "donjon_sandboxes", 1, function="sleeper", state="busy")
        started = _descendants(node.proc.pid)
        assert any(b"bwrap" in c for c in started.values()), started
        node.proc.send_signal(sig)
        # Far below the call's 500 s: the grace period (3 s) bounds the stop.
        node.proc.wait(STOP_WAIT_S)
        call.join(STOP_WAIT_S)
        assert _wait_gone(started) == []
        # Ended by the node after the grace period: answered as a failed call, not dropped.
        assert len(answers) == 1 and answers[0] >= 500, answers
    finally:
        node.stop()
    log = (tmp_path / "data" / "serve.log").read_text()
    assert "Traceback" not in log, log
    assert node.proc.returncode in (0, -signal.SIGTERM, -signal.SIGINT, 130), log


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm-to-up", "ctrl-c-to-the-group"],
)
def test_up_stops_on_signal_and_takes_its_server_along(
    tmp_path: Path, sig: signal.Signals, group: bool
) -> None:
    """SIGTERM to up, or Ctrl-C to its process group: up and its server end, no traceback."""
    examples = tmp_path / "examples"
    examples.mkdir()
    _sleeper(examples / "sleeper")
    proc = start_up(tmp_path / "data", free_port(), examples, new_session=True)
    try:
        lines = read_until_serving(proc)
        assert lines and lines[-1].startswith("serving;"), "".join(lines)
        started = _descendants(proc.pid)
        assert any(b"serve" in c for c in started.values()), started
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=STOP_WAIT_S)
        assert _wait_gone(started) == []
    finally:
        # Whatever is left of its process group (its server, should up have died alone).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "Traceback" not in out, out
    assert "stopped" in out, out
    assert proc.returncode == 0, out


def test_up_refuses_a_busy_port_before_doing_anything(tmp_path: Path) -> None:
    """up on a port something listens on says "port in use" and leaves no data dir or key."""
    import socket

    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "donjon.cli", "up", "--port", str(port)],
            env=donjon_env(data),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    assert "port in use" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "DONJON_API_KEY" not in done.stdout
    assert not data.exists()


def test_serve_refuses_a_busy_port_with_a_clear_error(tmp_path: Path) -> None:
    """serve on a port in use ends at once with "port in use", not a bind traceback."""
    import socket

    data = tmp_path / "data"
    env = donjon_env(data)
    subprocess.run(
        [sys.executable, "-m", "donjon.cli", "init", "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert "port in use" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
