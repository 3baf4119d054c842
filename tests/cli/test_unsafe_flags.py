"""Every `--unsafe-*` flag of `donjon serve` is warned and audited each time it is used."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness import donjon_env, free_port, run_cli


def test_serve_unsafe_http_is_audited(tmp_path: Path) -> None:
    """`serve --unsafe-http` logs UNSAFE and appends a node.unsafe record naming the flag."""
    env = donjon_env(tmp_path / "data")
    key = run_cli(env, "init", "--json").stdout.split('"admin_key": "')[1].split('"')[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port), "--unsafe-http"],
        env=env | {"DONJON_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        records: list[dict[str, object]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(
                    f"{url}/v1/audit",
                    params={"n": 100},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=5,
                )
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            records = r.json()
            if any(rec["action"] == "node.unsafe" for rec in records):
                break
            if any(rec["action"] == "node.start" for rec in records):  # then a little more
                deadline = min(deadline, time.monotonic() + 5)
            time.sleep(0.2)
        unsafe = [rec for rec in records if rec["action"] == "node.unsafe"]
        assert [rec["detail"] for rec in unsafe] == [{"flag": "--unsafe-http"}], records
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert b"UNSAFE" in out
