"""`donjon up`: one command from nothing to the examples answering over HTTPS."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness import EXAMPLES, donjon_env, free_port, read_until_serving, run_cli, start_up


@pytest.mark.slow
def test_up_initialises_serves_and_deploys_every_example(tmp_path: Path) -> None:
    """up prints the admin key once, deploys examples/ and each example answers."""
    data = tmp_path / "data"
    proc, out, port = _up_until_serving(data, EXAMPLES)
    try:
        assert "serving;" in out, out
        key = _admin_key(out)
        url = f"https://127.0.0.1:{port}"
        call_env = donjon_env(data, url, key)
        hello = json.loads(run_cli(call_env, "invoke", "hello", "--data", '{"name": "up"}').stdout)
        assert hello["message"] == "hello, up"
        size = json.loads(
            run_cli(call_env, "invoke", "naturalsize", "--data", '{"bytes": 3000000}').stdout
        )
        assert size["size"] == "3.0 MB"
        scratch = json.loads(run_cli(call_env, "invoke", "scratch").stdout)
        assert scratch["tmp_before"] == []
        scratch = json.loads(run_cli(call_env, "invoke", "scratch").stdout)
        assert scratch["tmp_before"] == []
        _echo_answers(url, data, key, call_env)
        for example in ("hello", "echo-http", "naturalsize", "scratch"):
            assert f"deployed {example}" in out
        # The bootstrap key `up` minted to deploy with is revoked afterwards.
        keys = json.loads(run_cli(call_env, "key", "ls", "--json").stdout)
        assert all(k["revoked_at"] for k in keys if k["name"] == "donjon-up")
    finally:
        _stopped(proc)


def _echo_answers(url: str, data: Path, key: str, call_env: dict[str, str]) -> None:
    """examples/echo-http through its route, and invoked directly with a forged event."""
    tls = ssl.create_default_context(cafile=str(data / "tls" / "cert.pem"))
    r = httpx.post(
        f"{url}/fn/echo?x=1",
        content=b"hi",
        verify=tls,
        headers={"authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200
    assert r.json()["query"] == {"x": "1"}
    assert r.json()["caller"].startswith("key:")
    # Invoked directly, the caller writes the event: the example reads the caller
    # from its context, never from the event's `principal`.
    forged = {"method": "GET", "path": "/echo", "query": {}, "body": "", "principal": "x"}
    direct = json.loads(
        run_cli(call_env, "invoke", "echo-http", "--data", json.dumps(forged)).stdout
    )
    assert json.loads(direct["body"])["caller"].startswith("key:")


def _up_until_serving(data: Path, examples: Path) -> tuple[subprocess.Popen[str], str, int]:
    """`donjon up` started on `data` and read until it serves: the process, what it
    printed, its port."""
    port = free_port()
    proc = start_up(data, port, examples)
    return proc, "".join(read_until_serving(proc, 240)), port


def _admin_key(out: str) -> str:
    """The admin key `up` printed once, at its first run."""
    return next(ln.split("=", 1)[1].strip() for ln in out.splitlines() if "DONJON_API_KEY=" in ln)


def _stopped(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(90)  # up waits out its server's grace (and 30 s more) before a kill
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.slow
def test_up_audits_the_key_it_mints_and_reissues(tmp_path: Path) -> None:
    """The developer key each `up` makes (the first) or reissues (the next ones) to deploy
    with, before its node runs, is audited like any key change: its record waits in the
    audit outbox with the change and the node appends it before it serves, ahead of the
    deploys and the key's revocation (helper-123's review: no record at all)."""
    data, examples = tmp_path / "data", tmp_path / "examples"
    examples.mkdir()
    shutil.copytree(EXAMPLES / "hello", examples / "hello")
    admin = ""
    for run in range(2):
        proc, out, port = _up_until_serving(data, examples)
        try:
            assert "serving;" in out, out
            assert "left in the outbox" not in out, out  # no crash to recover from
            # The second `up` finds hello as it was: said as `donjon deploy` says it.
            assert ("deployed hello v1" if run == 0 else "unchanged hello v1") in out, out
            if run == 0:
                admin = _admin_key(out)
            env = donjon_env(data, f"https://127.0.0.1:{port}", admin)
            records = json.loads(
                run_cli(env, "audit", "tail", "-n", "200", "--output", "json").stdout
            )
        finally:
            _stopped(proc)
        ups = [r for r in records if r["detail"].get("via") == "up"]
        assert [r["action"] for r in ups] == ["key.create", "key.reissue"][: run + 1], ups
        made = ups[-1]
        assert made["detail"]["name"] == "donjon-up"
        assert "recovered" not in made["detail"]  # written for a drain, not left by a kill
        revokes = [
            r for r in records if r["action"] == "key.revoke" and r["target"] == made["target"]
        ]
        assert len(revokes) == run + 1 and revokes[-1]["seq"] > made["seq"], records


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
def test_a_killed_up_takes_its_server_with_it(tmp_path: Path) -> None:
    """`up` killed outright (SIGKILL: no handler runs) does not leave its `serve` running,
    holding the data dir and the port: the server is told to stop and does."""
    examples = tmp_path / "examples"
    examples.mkdir()
    proc, _, port = _up_until_serving(tmp_path / "data", examples)
    (server,) = _children(proc.pid)
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    for _ in range(600):  # bounded: its grace and a margin
        if not Path(f"/proc/{server}").exists() or "Z" in _state(server):
            break
        time.sleep(0.1)
    else:
        os.kill(server, signal.SIGKILL)
        raise AssertionError(f"up's server {server} still runs after up was killed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
