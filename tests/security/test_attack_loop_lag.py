"""A flood that makes the gateway's loop late is shed in part, in proportion to the lag.

Before: while the loop lagged under the bound (DONJON_MAX_LOOP_LAG_S) the node shed
only what a function's queue could not take, so a flood of calls it could take kept
the loop late for everyone; past the bound it shed every request. Now, once the pool
has refused a call at its bounds, a share of the invoke calls the pool would take (of
the functions it refused calls of) is shed from the request head, the share set by
PIE's controller on the loop's lag (gateway/lag_shed.py): some callers are served,
some get 503 with Retry-After, counted and audited as `node.shed` (reason `loop-lag`).
Deny by default stays: a head without a verified key and grant is never shed there, it
gets its 401. Another tenant's calls of a function that has room are never in the share.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest

from harness import LiveNode
from shed_support import MANIFEST, SLOW, audit_records, metric, slow_node, wait_for_metric

FLOODERS = 24
#: How long the flood may take to make the loop lag the (tiny) target: a deadline, not a timing.
DEADLINE_S = 60.0
_LAG = "overloaded: the node runs late"
#: A refusal at the node's bound on waiting calls (sandbox/backlog.py), at admission...
_NODE_FULL = "503 overloaded: the node has"
#: ...or the same refusal answered from the request's head (gateway/early_shed.py), which
#: says no more: the victim's two connections never fill `other`'s own bound, so each
#: refusal of theirs is the node's.
_HEAD_SHED = "503 overloaded: the node is shedding calls to this function"
_REFUSED_FULL = (_NODE_FULL, _HEAD_SHED)


#: The lag target 1 ms, updated every 2 ms, the all-or-nothing bound far off (60 s).
_LAGGING = {
    "DONJON_LAG_TARGET_MS": "1",
    "DONJON_LAG_INTERVAL_MS": "2",
    "DONJON_MAX_LOOP_LAG_S": "60",
    "DONJON_MAX_QUEUE_WAIT_S": "300",
    "DONJON_AUDIT_DENIAL_WINDOW_S": "3600",
}


def _deploy_slow(live: LiveNode, tmp_path: Path, name: str, concurrency: int) -> None:
    """Deploy `name`, a warm function sleeping the event's `sleep`, at `concurrency`."""
    fn = tmp_path / name
    fn.mkdir(mode=0o755)
    (fn / "main.py").write_text(SLOW)
    manifest = MANIFEST.format(name=name)
    (fn / "donjon.yaml").write_text(
        manifest.replace("concurrency: 1", f"concurrency: {concurrency}")
    )
    live.deploy(fn)


@pytest.fixture
def lagging_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node whose lag target is 1 ms (any flood passes it), updated every 2 ms; the
    all-or-nothing bound far off (60 s); one call may wait per function."""
    with slow_node(tmp_path, "slow", {**_LAGGING, "DONJON_MAX_QUEUED_PER_FUNCTION": "1"}) as live:
        _deploy_slow(live, tmp_path, "fast", 8)
        yield live


def _hold_slow(node: LiveNode) -> list[threading.Thread]:
    """One call of `slow` running (10 s) and one waiting: the next is refused at its bounds."""

    def hold(sleep: float) -> None:
        node.invoke("slow", {"sleep": sleep})

    running = threading.Thread(target=hold, args=(10,))
    running.start()
    wait_for_metric(node, "donjon_sandboxes", 1, function="slow", state="busy")
    waiting = threading.Thread(target=hold, args=(0,))
    waiting.start()
    wait_for_metric(node, "donjon_calls_waiting", 1)
    return [running, waiting]


class _Flooders:
    """FLOODERS threads, each running `_run` until the `with` block ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(FLOODERS)]

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def _run(self) -> None:
        raise NotImplementedError


class _Flood(_Flooders):
    """FLOODERS connections, each calling `slow` (refused at its bounds: the controller
    stays armed) then `fast`, sorting `fast`'s answers: served, shed for the lag, other."""

    def __init__(self, node: LiveNode) -> None:
        self.node = node
        self.counts = {"served": 0, "lag": 0, "other": 0}
        super().__init__()

    def seen(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def _run(self) -> None:
        with self.node.client() as c:
            while not self._stop.is_set():
                c.post("/v1/functions/slow/invoke", content=b'{"sleep": 0}')
                r = c.post("/v1/functions/fast/invoke", content=b'{"sleep": 0}')
                kind = "other"
                if r.status_code == 200:
                    kind = "served"
                elif r.status_code == 503 and r.json()["detail"].startswith(_LAG):
                    assert r.headers["retry-after"] == "1"
                    kind = "lag"
                with self._lock:
                    self.counts[kind] += 1


@pytest.mark.slow
def test_loop_lag_flood_is_shed_in_part_and_anonymous_heads_get_401(
    lagging_node: LiveNode,
) -> None:
    """`slow` held full (one call running, one waiting) and a call refused at its bounds
    arm the controller; a flood of `fast` calls on 24 connections (past its 8 running and
    1 waiting: refused at its bounds too, so in the share) makes the loop late:
    some of them are served and some shed with the lag's 503 while the flood lasts; heads
    without a valid key get 401 all along; the sheds are counted and audited. The node is
    stopped for 30 ms in every 100 meanwhile (`_Stalls`), so its loop runs late on any
    machine: this client alone may not make it."""
    node = lagging_node
    held = _hold_slow(node)
    anonymous: list[int] = []
    stalls = _Stalls(node)
    with _Flood(node) as flood, stalls:
        deadline = time.monotonic() + DEADLINE_S
        with httpx.Client(base_url=node.url, verify=node.tls, timeout=60) as anon:
            while time.monotonic() < deadline:
                for headers in ({}, {"authorization": "Bearer dk_not-a-key"}):
                    r = anon.post("/v1/functions/fast/invoke", content=b"{}", headers=headers)
                    anonymous.append(r.status_code)
                seen = flood.seen()
                if seen["lag"] >= 20 and seen["served"] >= 20:
                    break
                time.sleep(0.01)
    for t in held:
        t.join(120)
    counts = flood.seen()
    assert counts["lag"] >= 20, counts  # a share shed for the loop's lag...
    assert counts["served"] >= 20, counts  # ...not all
    assert anonymous and set(anonymous) == {401}, anonymous
    shed_metric = metric(node, "donjon_rate_limited_total", function="fast", limit="overload")
    assert shed_metric >= counts["lag"]
    node.stop()
    sheds = [r["detail"] for r in audit_records(node.data_dir) if r["action"] == "node.shed"]
    # The first of a window is a record of its own; the rest one aggregate, by reason.
    audited = sum(d.get("reason") == "loop-lag" for d in sheds)
    audited += sum(d.get("reasons", {}).get("loop-lag", 0) for d in sheds)
    assert audited >= counts["lag"], sheds


class _Refused(_Flooders):
    """FLOODERS connections of `key` calling `slow` (held full: each call refused at its
    bounds), counting the answers."""

    def __init__(self, node: LiveNode, key: str) -> None:
        self.node, self.key = node, key
        self.statuses: dict[int, int] = {}
        super().__init__()

    def count(self, status: int) -> int:
        with self._lock:
            return self.statuses.get(status, 0)

    def _run(self) -> None:
        with self.node.client(self.key) as c:
            while not self._stop.is_set():
                r = c.post("/v1/functions/slow/invoke", content=b'{"sleep": 0}')
                with self._lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1


@pytest.mark.slow
def test_tenant_flooding_its_own_full_function_gets_no_other_callers_shed(
    lagging_node: LiveNode,
) -> None:
    """A tenant whose key may invoke only `slow` holds it full and floods it from 24
    connections: its calls are refused at the function's bounds (its own queue), which
    arms the controller, and its flood makes the loop late. Another tenant calling
    `fast` one call at a time (far below `fast`'s bounds) must be served every time:
    one tenant's full function is no reason to shed another's calls."""
    node = lagging_node
    attacker = node.create_key("lag-attacker", "invoker", functions=["slow"])["key"]
    victim = node.create_key("lag-victim", "invoker", functions=["fast"])["key"]
    running = threading.Thread(target=node.invoke, args=("slow", {"sleep": 20}, attacker))
    running.start()
    wait_for_metric(node, "donjon_sandboxes", 1, function="slow", state="busy")
    waiting = threading.Thread(target=node.invoke, args=("slow", {"sleep": 0}, attacker))
    waiting.start()
    wait_for_metric(node, "donjon_calls_waiting", 1)
    answers: list[str] = []
    with _Refused(node, attacker) as flood, node.client(victim) as c:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and (len(answers) < 500 or flood.count(503) < 500):
            r = c.post("/v1/functions/fast/invoke", content=b'{"sleep": 0}')
            answers.append("200" if r.status_code == 200 else _detail(r))
    running.join(120)
    waiting.join(120)
    assert flood.count(503) >= 500  # the attacker's calls refused at slow's bounds
    # 500 answers are asked for; on a machine loaded by other work the deadline may come
    # first (475 seen; 169 with two other test runs beside this one's): 100 all served
    # still tells the defect (258 of 500 shed, about one in two) apart.
    assert len(answers) >= 100 and set(answers) == {"200"}, collections.Counter(answers)


@pytest.fixture
def node_bound_node(tmp_path: Path) -> Iterator[LiveNode]:
    """`slow`, `fast` and `other`, another tenant's, each at concurrency 1; two calls may
    wait per function and four on the whole node. Two of `slow`'s and two of `fast`'s
    calls fill the node's four places, so `fast`'s calls are refused at its own bound
    (which arms the lag shed for it) and `other`'s at the node's alone. (With two places
    in all, held by `slow`'s, every `fast` call was refused at the node's bound alone too,
    and the flood was shed for the lag only once the hold on `slow` had ended, if ever.)"""
    limits = {"DONJON_MAX_QUEUED_PER_FUNCTION": "2", "DONJON_MAX_QUEUED": "4"}
    with slow_node(tmp_path, "slow", {**_LAGGING, **limits}) as live:
        _deploy_slow(live, tmp_path, "fast", 1)
        _deploy_slow(live, tmp_path, "other", 1)
        yield live


class _Stalls(threading.Thread):
    """Stops the node for 30 ms every 100 ms until stopped: its loop then runs late
    whatever else this machine is doing (the client here may be too slow to make it)."""

    def __init__(self, node: LiveNode) -> None:
        super().__init__()
        self.pid = node.proc.pid
        self.stop = threading.Event()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(120)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            os.kill(self.pid, signal.SIGSTOP)
            try:
                time.sleep(0.03)
            finally:
                os.kill(self.pid, signal.SIGCONT)


class _Victim(threading.Thread):
    """Calls `other` one call at a time with `key`, each sleeping `sleep` s, until
    stopped; keeps every answer's status and detail."""

    def __init__(self, node: LiveNode, key: str, sleep: float) -> None:
        super().__init__()
        self.node, self.key, self.sleep = node, key, sleep
        self.answers: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        body = f'{{"sleep": {self.sleep}}}'.encode()
        with self.node.client(self.key) as c:
            while not self.stop.is_set():
                r = c.post("/v1/functions/other/invoke", content=body)
                self.answers.append("200" if r.status_code == 200 else _detail(r))


@pytest.mark.slow
def test_a_tenant_refused_at_the_nodes_bound_is_not_shed_for_the_loops_lag(
    node_bound_node: LiveNode,
) -> None:
    """`slow` and `fast` are each held full (one call running, two waiting), which takes the
    node's four places to wait, and a flood of `slow` and `fast` calls from 24 connections
    is refused at their own bounds, which arms the lag shed for them and makes the loop
    run late. Another tenant keeps `other` busy from one connection and calls it from
    another: a call that finds it busy is refused at the node's bound, which is full (503,
    as it must be: nothing may wait); a call that finds it free must be served. Before, a
    refusal at the node's bound alone marked `other` as overflowing, and the lag shed
    took a share of its calls that had room (503 "the node runs late"). The node is
    stopped for 30 ms in every 100 meanwhile, so its loop runs late on any machine."""
    node = node_bound_node
    victim = node.create_key("bound-victim", "invoker", functions=["other"])["key"]
    # `slow` and `fast` are each held full (one call running, two waiting): the node's four
    # places to wait are taken for 20 s, whatever the flood does, so a call of `other` that
    # finds it busy is refused at the node's bound (on a slow machine the flood's own
    # waiting calls left them free too often to count on).
    running, waiting = [], []
    for function in ("slow", "fast"):
        running.append(threading.Thread(target=node.invoke, args=(function, {"sleep": 20})))
        running[-1].start()
        wait_for_metric(node, "donjon_sandboxes", 1, function=function, state="busy")
        for _ in "ab":
            waiting.append(threading.Thread(target=node.invoke, args=(function, {"sleep": 0})))
            waiting[-1].start()
        wait_for_metric(node, "donjon_calls_waiting", len(waiting))
    busy, caller = _Victim(node, victim, 0.02), _Victim(node, victim, 0)
    with _Flood(node) as flood, _Stalls(node):
        busy.start()
        caller.start()
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            flooded, answers = flood.seen(), caller.answers + busy.answers
            if (
                flooded["lag"] >= 20
                and answers.count("200") >= 200
                and len([a for a in answers if a.startswith(_REFUSED_FULL)]) >= 5
            ):
                break
            time.sleep(0.05)
        busy.stop.set()
        caller.stop.set()
        busy.join(120)
        caller.join(120)
    for t in running + waiting:
        t.join(120)
    seen = collections.Counter(caller.answers + busy.answers)
    assert flood.seen()["lag"] >= 20, flood.seen()  # the loop ran late: the flood was shed
    # The victim's calls refused while the node's bound was full: each would have marked
    # `other` for the lag shed's 5 s hold before the fix (280 in one run with `slow` and
    # `fast` held full, 2-4 in 60 s when only the flood filled the node's places).
    full = sum(n for a, n in seen.items() if a.startswith(_REFUSED_FULL))
    assert full >= 5, seen
    assert seen["200"] >= 100, seen  # ...and the calls that found `other` free...
    assert not [a for a in seen if _LAG in a], seen  # ...were never shed for the loop's lag


def _detail(r: httpx.Response) -> str:
    """A refusal's status and problem detail (its request id left out)."""
    try:
        return f"{r.status_code} {r.json()['detail']}"
    except (ValueError, KeyError, TypeError):
        return f"{r.status_code} {r.text[:200]}"
