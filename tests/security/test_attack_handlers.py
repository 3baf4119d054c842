"""Hostile handlers: odd results, abuse of their own descriptors, forged frames, code that
attacks at import. Each one fails alone; the platform answers cleanly and keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest

from harness import LiveNode
from sec_support import ATTACKERS, assert_problem, in_both_modes


def _still_serving(node: LiveNode, fn: str) -> None:
    """The function answers a plain call correctly, and the gateway is healthy."""
    r = node.invoke(fn, {"op": "echo", "n": 7})
    assert r.status_code == 200, r.text
    assert r.json() == {"op": "echo", "n": 7}
    with httpx.Client(verify=node.tls) as c:
        assert c.get(f"{node.url}/healthz").status_code == 200


def _clean(r: httpx.Response) -> None:
    """A 200 with JSON, or a problem document: never a hang, a traceback or a broken reply."""
    if r.status_code == 200:
        json.loads(r.content)
        return
    body = assert_problem(r, r.status_code)
    assert r.status_code >= 500
    assert "Traceback" not in r.text
    assert "/fn/" not in body["detail"]


@ATTACKERS
def test_huge_result_is_delivered_or_refused_cleanly(node: LiveNode, fn: str) -> None:
    """A 40 MB result comes back whole or as a clean error; the function serves on."""
    r = node.invoke(fn, {"op": "huge", "mb": 40})
    _clean(r)
    if r.status_code == 200:
        assert len(r.json()["blob"]) == 40 * 1024 * 1024
    _still_serving(node, fn)


@ATTACKERS
@pytest.mark.parametrize("kind", ["set", "nan", "object", "bytes", "circular"])
def test_non_json_result_is_a_clean_500(node: LiveNode, fn: str, kind: str) -> None:
    """A result JSON cannot carry is a 500 problem that reveals nothing of the handler."""
    r = node.invoke(fn, {"op": "not_json", "kind": kind})
    assert_problem(r, 500)
    assert "Traceback" not in r.text
    _still_serving(node, fn)


@ATTACKERS
@pytest.mark.parametrize("close_std", [False, True])
def test_garbage_on_its_own_descriptors_does_not_break_the_platform(
    node: LiveNode, fn: str, close_std: bool
) -> None:
    """Writing garbage to every descriptor (and closing stdout/stderr) hurts only that call."""
    _clean(node.invoke(fn, {"op": "garbage_fds", "close_std": close_std}))
    _still_serving(node, fn)


@ATTACKERS
def test_handler_that_never_reads_its_input(node: LiveNode, fn: str) -> None:
    """A handler that ignores an event far past a pipe's buffer (960 KiB, under the default
    1 MiB `limits.body`) answers, and the next call gets its own event."""
    r = node.invoke(fn, {"op": "ignore_input", "pad": "p" * (960 * 1024)})
    assert r.status_code == 200, r.text
    assert r.json() == {"ignored": True}
    _still_serving(node, fn)


@ATTACKERS
@pytest.mark.parametrize("trailing_garbage", [False, True])
def test_forged_reply_frames_do_not_reach_the_next_call(
    node: LiveNode, fn: str, trailing_garbage: bool
) -> None:
    """Frames a handler forges on its own call socket go no further than its own answer."""
    _clean(node.invoke(fn, {"op": "fake_reply", "trailing_garbage": trailing_garbage}))
    for _ in range(3):
        _still_serving(node, fn)


@in_both_modes("sec-import")
def test_import_time_code_gets_no_privilege(node: LiveNode, fn: str) -> None:
    """Module-level code runs with no capability: it cannot unshare or mount, in either mode."""
    r = node.invoke(fn, {})
    assert r.status_code == 200, r.text
    at_import = r.json()["at_import"]
    assert int(at_import["status"]["CapEff"], 16) == 0, at_import
    assert int(at_import["status"]["CapPrm"], 16) == 0, at_import
    assert at_import["unshare_mount_ns"] != "ok"
    assert at_import["mount_tmpfs"] != "ok"


@in_both_modes("sec-import")
def test_import_time_code_cannot_switch_off_the_per_call_controls(node: LiveNode, fn: str) -> None:
    """Replacing the runtime's capability drop and seccomp loader at import changes nothing."""
    for _ in range(2):
        r = node.invoke(fn, {})
        assert r.status_code == 200, r.text
        in_call = r.json()["in_call"]
        assert int(in_call["CapEff"], 16) == 0, r.json()
        assert int(in_call["CapPrm"], 16) == 0, r.json()
