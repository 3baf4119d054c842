"""Invariants 3 and 5, warm mode: a warm worker's persistent channel (sandbox/warmlink.py).

The handler finds the channel the way an attacker would (up the stack) and
forges frames on it, breaks it, or leaves a thread writing on it. Each
attack's call fails cleanly or gets its own answer, and the callers after it
get their own answers, never one the attacker wrote.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator

import httpx
import pytest

from harness import LiveNode
from sec_support import assert_problem

_CHANNEL = """\
import json
import os
import socket
import sys
import threading
import time

END = b"\\x00end:"


def _local(name, kind):
    frame = sys._getframe(1)
    while frame is not None:
        value = frame.f_locals.get(name)
        if isinstance(value, kind):
            return value
        frame = frame.f_back
    raise RuntimeError(f"no {name} found")


def _frames(*payloads):
    return b"".join(len(p).to_bytes(4, "big") + p for p in payloads)


def _reply(what):
    return _frames(b'{"ok":true,"out":"forged"}', json.dumps({"forged": what}).encode())


def _keep_writing(fd, data):
    def run():
        for _ in range(6000):  # a minute, at most
            try:
                os.write(fd, data)
            except OSError:
                return
            time.sleep(0.01)

    threading.Thread(target=run, daemon=True).start()


def handler(event, context):
    op = event.get("op")
    if op == "echo":
        print("echo", event["n"])
        return {"echo": event["n"]}
    fd = _local("sock", socket.socket).fileno()
    if op == "wrong-id":
        os.write(fd, _reply("wrong-id") + _frames(END + os.urandom(16)))
    elif op == "second-reply":
        os.write(fd, _reply("second"))
    elif op == "giant-length":
        os.write(fd, b"\\xff\\xff\\xff\\xff" + b"A" * 64)
    elif op == "garbage-after-end":
        token = _local("token", bytes)
        os.write(fd, _reply("own") + _frames(END + token) + b"GARBAGE" * 16)
    elif op == "reply-for-next-call":
        guess = bytes(16)  # the next call's token cannot be known: any guess
        os.write(fd, _reply("next") + _frames(END + guess))
    elif op == "reply-for-next-call-later":
        _keep_writing(fd, _reply("next") + _frames(END + bytes(16)))
    elif op == "close-channel":
        os.close(fd)
    elif op == "dup2-over-channel":
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, fd)
    elif op == "close-stdout":
        os.close(1)
        os.close(2)
    elif op == "thread-writes-garbage":
        _keep_writing(fd, b"\\x00\\x00\\x00\\x05GARBA")
    return {"real": op}
"""


@pytest.fixture(scope="module")
def channel_fn(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A warm function whose ops attack its own channel."""
    fn = f"sec-warm-channel-{secrets.token_hex(3)}"
    src = tmp_path_factory.mktemp("warm-channel")
    (src / "main.py").write_text(_CHANNEL)
    (src / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\nisolation: warm\n"
        "limits: {concurrency: 1}\n"
    )
    node.deploy(src)
    try:
        yield fn
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")
        shutil.rmtree(src, ignore_errors=True)


def _clean(r: httpx.Response, op: str) -> None:
    """The attack's own call: its own answer, or a problem document (never a forged answer)."""
    if r.status_code == 200:
        assert r.json() == {"real": op}, r.text
        return
    body = assert_problem(r, r.status_code)
    assert r.status_code >= 500, r.text
    assert "Traceback" not in r.text
    assert "forged" not in r.text
    assert "/fn/" not in body["detail"]


def _own_answer(node: LiveNode, fn: str) -> httpx.Response:
    n = secrets.randbelow(1 << 30)
    r = node.invoke(fn, {"op": "echo", "n": n})
    if r.status_code == 200:
        assert r.json() == {"echo": n}, r.text
    else:
        _clean(r, "echo")
    return r


def _attack(node: LiveNode, fn: str, op: str) -> None:
    """Prime the worker, attack, and check the next caller gets its own answer."""
    assert _own_answer(node, fn).status_code == 200
    _clean(node.invoke(fn, {"op": op}), op)
    r = _own_answer(node, fn)
    assert r.status_code == 200, r.text
    assert _own_answer(node, fn).status_code == 200


def _attack_by_thread(node: LiveNode, fn: str, op: str) -> None:
    """As `_attack`, for a thread that writes whenever it likes: a call its bytes land in
    fails cleanly (they are never its answer); its sandbox goes, so callers after it
    are served."""
    assert _own_answer(node, fn).status_code == 200
    _clean(node.invoke(fn, {"op": op}), op)
    served = [_own_answer(node, fn).status_code for _ in range(4)]
    assert served[-2:] == [200, 200], served


@pytest.mark.parametrize(
    "op",
    [
        "wrong-id",
        "second-reply",
        "giant-length",
        "garbage-after-end",
        "reply-for-next-call",
    ],
)
def test_forged_frames_on_the_warm_channel_reach_no_other_call(
    node: LiveNode, channel_fn: str, op: str
) -> None:
    """Forged frames (wrong id, second reply, giant length, garbage, next call's) fail only it."""
    _attack(node, channel_fn, op)


def test_reply_for_the_next_call_written_after_return_is_not_read_as_its(
    node: LiveNode, channel_fn: str
) -> None:
    """A thread that writes a reply for the next call after its own returned fools nobody."""
    _attack_by_thread(node, channel_fn, "reply-for-next-call-later")


@pytest.mark.parametrize("op", ["close-channel", "dup2-over-channel"])
def test_closing_or_replacing_the_warm_channel_fails_only_that_call(
    node: LiveNode, channel_fn: str, op: str
) -> None:
    """Closing the channel, or dup2 over it, fails only that call; the next caller is served."""
    _attack(node, channel_fn, op)


def test_closing_stdout_in_a_warm_call_leaves_the_next_calls_output(
    node: LiveNode, channel_fn: str
) -> None:
    """Closing fd 1 and 2 in one call: the next call's output is still captured."""
    _attack(node, channel_fn, "close-stdout")
    r = _own_answer(node, channel_fn)
    assert r.status_code == 200
    with node.client() as c:
        rows = c.get(f"/v1/functions/{channel_fn}/logs", params={"n": 20}).json()
    entry = next(row for row in rows if row["request_id"] == r.headers["x-request-id"])
    assert f"echo {r.json()['echo']}" in entry["output"], entry


def test_thread_left_writing_on_the_warm_channel_fools_no_caller(
    node: LiveNode, channel_fn: str
) -> None:
    """A thread that keeps writing on the channel after its call: no caller reads its bytes."""
    _attack_by_thread(node, channel_fn, "thread-writes-garbage")
