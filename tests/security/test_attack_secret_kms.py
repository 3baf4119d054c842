"""The vault's key provider (DONJON_KMS_COMMAND) made to hang, as a KMS in an outage does,
while tenants call functions granted secrets.

- Each open of a secret ran the provider on one of the event loop's default threads
  (`asyncio.to_thread`), held until it answered or its timeout (DONJON_KMS_TIMEOUT_S)
  ended it. The stores, the admin API and much of the node wait for those same few
  threads (os.cpu_count() + 4 of them): a handful of calls meeting a cold cache (after a
  start, a rotation or a rekey) while the provider hung stalled every tenant's listing,
  deploy and key change for the whole timeout. The provider now runs from the event
  loop, holding no thread (_subprocess.py's `run_async`).
- Every call meeting a cold cache ran the provider once for itself: a burst of calls
  after a rotation started as many provider processes. Calls asking for a secret while
  it is being opened now wait for that one open.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from async_support import bundle
from harness import LiveNode, start_node

PROVIDER = Path(__file__).parent.parent / "vault" / "kms_provider.py"
#: More calls than the event loop's default threads (ThreadPoolExecutor's default size).
HELD = min(32, (os.cpu_count() or 1) + 4) + 2


@pytest.fixture(scope="module")
def hold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """While this file exists, the provider holds every unwrap (see kms_provider.py)."""
    return tmp_path_factory.mktemp("kms-hold") / "hold"


@pytest.fixture(scope="module")
def kms_node(tmp_path_factory: pytest.TempPathFactory, hold: Path) -> Iterator[LiveNode]:
    key = tmp_path_factory.mktemp("kms-key") / "kms.key"
    argv = [sys.executable, str(PROVIDER), str(key), "--hold-unwraps-while", str(hold)]
    live = start_node(
        tmp_path_factory.mktemp("kms-node"),
        {"DONJON_KMS_COMMAND": shlex.join(argv), "DONJON_KMS_TIMEOUT_S": "300"},
    )
    try:
        yield live
    finally:
        hold.unlink(missing_ok=True)
        live.stop()


def _function(live: LiveNode, tmp: Path, name: str, secret: str) -> None:
    code = f"def handler(event, context):\n    return {{'n': len(context.secrets['{secret}'])}}\n"
    live.deploy(bundle(tmp, name, code, f"permissions: {{secrets: [{secret}]}}\n"))


def _rotate(live: LiveNode, name: str, value: str) -> None:
    """A new version: the node forgets the opened value (its cache of `name` is cold)."""
    with live.client() as c:
        assert c.post(f"/v1/secrets/{name}/versions", json={"value": value}).status_code == 201


def _call_all(live: LiveNode, names: list[str]) -> tuple[list[threading.Thread], list[object]]:
    """Call each of `names` from a thread of its own; (the threads, what each got: the
    functions answer the length of their secret's value, which they must not return)."""
    got: list[object] = []

    def call(name: str) -> None:
        try:
            r = live.invoke(name, {})
            got.append((r.status_code, r.json()))
        except httpx.HTTPError as e:
            got.append(repr(e))

    threads = [threading.Thread(target=call, args=(n,)) for n in names]
    for t in threads:
        t.start()
    return threads, got


def _runs(hold: Path) -> int:
    """The provider runs that held an unwrap."""
    return len(list(hold.parent.glob(f"{hold.name}.*")))


def _wait_for_runs(hold: Path, least: int) -> None:
    deadline = time.monotonic() + 60
    while _runs(hold) < least and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _runs(hold) >= least, _runs(hold)


def _listed_meanwhile(live: LiveNode) -> httpx.Response:
    """The function listing, asked again while the node sheds it for its loop's lag.

    With HELD calls in flight the node sheds a request while its event loop runs late
    (gateway/capacity.py, MIN_IN_FLIGHT), and on a loaded machine it does (ci61a: 262 ms,
    one 503): a prompt answer, not the stall tested here, which held the listing for the
    provider's whole timeout (300 s). So a shed listing is asked again, for 60 s at most."""
    deadline = time.monotonic() + 60
    with live.client() as c:
        while True:
            listed = c.get("/v1/functions", timeout=30)
            shed = listed.status_code == 503 and "at capacity" in listed.text
            if not shed or time.monotonic() > deadline:
                return listed
            time.sleep(float(listed.headers["retry-after"]))


def test_a_hung_key_provider_does_not_stall_the_rest_of_the_node(
    kms_node: LiveNode, hold: Path, tmp_path: Path
) -> None:
    """Calls of HELD functions, each granted its own secret, all wait on a hung provider:
    meanwhile the admin API answers (before, it waited for the provider's timeout); once
    the provider answers, every call gets its value."""
    names = [f"held-{i}" for i in range(HELD)]
    with kms_node.client() as c:
        for name in names:
            assert c.post(f"/v1/secrets/{name}-s", json={"value": f"v-{name}"}).status_code == 201
    for name in names:
        _function(kms_node, tmp_path, name, f"{name}-s")
        _rotate(kms_node, f"{name}-s", f"w-{name}-2")
    hold.touch()
    threads, got = _call_all(kms_node, names)
    try:
        _wait_for_runs(hold, 1)
        assert _listed_meanwhile(kms_node).status_code == 200
        assert got == []  # still held, all of them
    finally:
        hold.unlink()
        for t in threads:
            t.join()
    assert sorted(map(str, got)) == sorted(str((200, {"n": len(f"w-{n}-2")})) for n in names)


def test_a_burst_meeting_a_cold_cache_runs_the_key_provider_once(
    kms_node: LiveNode, hold: Path, tmp_path: Path
) -> None:
    """Calls of one function arriving while its rotated secret is being opened wait for
    that open: one provider run for all of them (before, one each)."""
    with kms_node.client() as c:
        assert c.post("/v1/secrets/burst-s", json={"value": "one"}).status_code == 201
    _function(kms_node, tmp_path, "burst", "burst-s")
    _rotate(kms_node, "burst-s", "rotated")
    for held in hold.parent.glob(f"{hold.name}.*"):
        held.unlink()
    hold.touch()
    threads, got = _call_all(kms_node, ["burst"] * 8)
    try:
        _wait_for_runs(hold, 1)
        time.sleep(3)  # the other calls reach the vault meanwhile (not a measurement)
        runs = _runs(hold)
    finally:
        hold.unlink()
        for t in threads:
            t.join()
    assert runs == 1
    assert got == [(200, {"n": len("rotated")})] * 8
