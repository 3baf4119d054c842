"""`donjon doctor` lists every control; `donjon serve` refuses with fewer than configured."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from donjon.controls.model import ALWAYS_REQUIRED, CONTROL_NAMES
from harness import client_tls, donjon_env, free_port, run_cli, start_node


def _doctor(env: dict[str, str], *args: str) -> tuple[int, Any]:
    done = run_cli(env, "doctor", "--output", "json", *args, check=False)
    return done.returncode, json.loads(done.stdout)


def test_doctor_lists_every_control_with_its_state_and_exit_code(tmp_path: Path) -> None:
    """Each control is listed once, in order, with present/required/detail/fix; the exit
    code is 0 exactly when no required control is missing."""
    env = donjon_env(tmp_path / "data")
    run_cli(env, "init", "--json")
    code, report = _doctor(env)
    controls = report["controls"]
    assert isinstance(controls, list)
    assert [c["name"] for c in controls] == list(CONTROL_NAMES)
    required = {c["name"] for c in controls if c["required"]}
    assert required >= ALWAYS_REQUIRED
    assert all(c["fix"] for c in controls if not c["present"] and c["required"])
    assert code == (0 if report["ok"] else 1)
    assert report["missing_required"] == [
        c["name"] for c in controls if c["required"] and not c["present"]
    ]
    text = run_cli(env, "doctor", check=False).stdout
    assert "namespace.net" in text and "cgroup.per-call" in text and "budget.pids" in text


def test_doctor_exits_non_zero_when_a_baseline_control_is_lost(tmp_path: Path) -> None:
    """A control in the recorded baseline that is gone (the data dir opened to others) is
    a missing required control: listed with its fix, exit 1."""
    data = tmp_path / "data"
    env = donjon_env(data)
    run_cli(env, "init", "--json")
    code, _ = _doctor(env, "--record-baseline")
    os.chmod(data, 0o755)  # noqa: S103 - the lost control under test: an open data dir
    code, report = _doctor(env)
    assert code == 1
    assert "data-dir" in report["missing_required"]
    (lost,) = [c for c in report["controls"] if c["name"] == "data-dir"]
    assert lost["fix"] == f"chmod 700 {data}"


def test_doctor_refuses_an_unknown_required_control(tmp_path: Path) -> None:
    """DONJON_REQUIRE_CONTROLS naming no control is a clear error, not a silent pass."""
    env = donjon_env(tmp_path / "data") | {"DONJON_REQUIRE_CONTROLS": "seccomp,selinux"}
    done = run_cli(env, "doctor", check=False)
    assert done.returncode != 0
    assert "selinux" in done.stderr and "Traceback" not in done.stderr


def _serve(env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = env | {"DONJON_URL": f"https://127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, f"https://127.0.0.1:{port}"


def _healthy(proc: subprocess.Popen[bytes], url: str, verify: ssl.SSLContext) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", verify=verify, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def _serve_healthy(
    env: dict[str, str], verify: ssl.SSLContext, *extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`_serve` until one serves (a port taken meanwhile by another test's server: another
    port), else fail with what serve printed."""
    for _ in range(3):
        proc, url = _serve(env, *extra)
        if _healthy(proc, url, verify):
            return proc, url
        proc.terminate()
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
        if "address already in use" not in out.lower():
            break
    raise AssertionError(f"serve {' '.join(extra)} did not start: {out[-3000:]}")


def test_serve_refuses_to_start_with_fewer_controls_than_its_baseline(tmp_path: Path) -> None:
    """The first serve records the baseline; once a control in it is lost, serve exits
    non-zero naming it and its fix, and serves only with --unsafe-fewer-controls, which is
    warned and audited."""
    data = tmp_path / "data"
    node = start_node(data)  # records the baseline
    key = node.admin_key
    node.stop()
    baseline = json.loads((data / "controls.json").read_text())["controls"]
    assert "data-dir" in baseline and set(baseline) >= ALWAYS_REQUIRED
    os.chmod(data, 0o755)  # noqa: S103 - the lost control under test: an open data dir
    env = donjon_env(data)
    refused, _ = _serve(env)
    out, _ = refused.communicate(timeout=120)
    assert refused.returncode != 0
    text = out.decode()
    assert "refusing to serve" in text and "data-dir" in text and f"chmod 700 {data}" in text
    verify = client_tls(str(data / "tls" / "cert.pem"))
    unsafe, url = _serve_healthy(env, verify, "--unsafe-fewer-controls")
    try:
        records = httpx.get(
            f"{url}/v1/audit",
            params={"n": 50},
            headers={"Authorization": f"Bearer {key}"},
            verify=verify,
            timeout=10,
        ).json()
        waived = [r for r in records if r["action"] == "node.unsafe"]
        assert waived and waived[-1]["detail"]["missing"] == ["data-dir"]
    finally:
        unsafe.terminate()
        out, _ = unsafe.communicate(timeout=60)
    assert b"UNSAFE" in out
