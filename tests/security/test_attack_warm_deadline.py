"""Invariant 5, warm mode: a call's deadline holds until its worker is back waiting for the
next call, so a call that answers early and keeps running is the one that times out."""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import LiveNode
from sec_support import Ready, audit_records, process_names

#: Well past the deadline (timeout_s 5 plus the gateway's grace) on a loaded machine.
_SETTLE_S = 45.0

_LINGER = """\
import ctypes
import json
import _socket
import socket
import sys
import time

_libc = ctypes.CDLL(None)


def _call_socket():
    frame = sys._getframe(1)
    while frame is not None:
        sock = frame.f_locals.get("sock")
        if isinstance(sock, _socket.socket):  # the runtime's are _socket's own (sockets.py)
            return sock
        frame = frame.f_back
    raise RuntimeError("no call socket found")


def handler(event, context):
    if event.get("op") != "linger":
        return {"fast": True}
    # Write the runtime's reply frames, shut the call's socket, keep running.
    sock = _call_socket()
    frames = [b'{"ok": true, "out": ""}', json.dumps({"early": True}).encode()]
    sock.sendall(b"".join(len(f).to_bytes(4, "big") + f for f in frames))
    sock.shutdown(socket.SHUT_RDWR)
    _libc.prctl(15, event["name"].encode(), 0, 0, 0)
    time.sleep(float(event["seconds"]))
    return {"late": True}
"""


@pytest.fixture
def lingering(node: LiveNode, tmp_path: Path, started: Ready) -> Iterator[str]:
    """A warm function (timeout 5 s) whose `linger` op answers early, shuts its socket, sleeps;
    ready for the test's start."""
    fn = f"sec-warm-linger-{secrets.token_hex(3)}"
    src = tmp_path
    (src / "main.py").write_text(_LINGER)
    (src / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: warm\n"
    )
    node.deploy(src)
    try:
        yield started(fn, just_deployed=True)
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")
        shutil.rmtree(src, ignore_errors=True)


def _named(name: str) -> list[int]:
    return [pid for pid, comm in process_names().items() if comm == name]


def _outcome(node: LiveNode, r: httpx.Response) -> str:
    (record,) = [
        rec
        for rec in audit_records(node, r.headers["x-request-id"])
        if rec["action"] == "function.invoke"
    ]
    return str(record["outcome"])


def test_warm_call_that_answers_early_and_sleeps_is_the_one_that_times_out(
    node: LiveNode, lingering: str
) -> None:
    """A warm call that writes its reply, shuts its socket and sleeps gets the 504, not the next."""
    fn = lingering
    a = node.invoke(fn, {"op": "linger", "name": f"wl-{secrets.token_hex(4)}", "seconds": 75})
    assert a.status_code == 504, a.text
    assert _outcome(node, a) == "FunctionTimeout"
    with node.client() as c:
        rows = c.get(f"/v1/functions/{fn}/logs", params={"n": 50}).json()
    entry = next(row for row in rows if row["request_id"] == a.headers["x-request-id"])
    assert "after writing its answer" in entry["output"], entry
    b = node.invoke(fn, {"op": "fast"})
    assert b.status_code == 200, b.text
    assert b.json() == {"fast": True}
    assert _outcome(node, b) == "ok"


def test_warm_call_that_answers_early_and_sleeps_is_killed_at_its_deadline(
    node: LiveNode, lingering: str
) -> None:
    """With no next call, the sleeping warm worker is killed at the call's deadline."""
    name = f"wk-{secrets.token_hex(4)}"
    answers: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            node.invoke(lingering, {"op": "linger", "name": name, "seconds": 75})
        )
    )
    caller.start()
    try:
        deadline = time.monotonic() + _SETTLE_S
        while not _named(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _named(name), "the call never started sleeping"
        while _named(name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _named(name) == [], "the warm worker still runs the call past its deadline"
    finally:
        caller.join(timeout=2 * _SETTLE_S)
    assert answers and answers[0].status_code == 504, answers


def test_warm_import_that_leaves_a_thread_running_is_refused(
    node: LiveNode, tmp_path: Path
) -> None:
    """A warm function whose import starts a thread is refused at deploy, with the reason."""
    fn = "sec-warm-thread"
    (tmp_path / "main.py").write_text(
        "import threading\nimport time\n\n"
        "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n\n\n"
        "def handler(event, context):\n    return {}\n"
    )
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: warm\n"
    )
    with pytest.raises(AssertionError, match="left threads running"):
        node.deploy(tmp_path)
    with node.client() as c:
        assert c.get(f"/v1/functions/{fn}").status_code == 404
