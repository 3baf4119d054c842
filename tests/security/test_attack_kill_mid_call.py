"""A node killed in the middle of a call (SIGKILL) must not leave the call out of the
audit log: the function ran, and may have acted. Before, a call's record was written
only when it ended, so a kill mid-call left no trace of it. Each call is noted in the
journal of calls in flight (audit/inflight.py) as it starts; the restarted node appends
a `function.invoke` record with outcome `interrupted` for it before it serves, once."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from donjon.audit.inflight import IN_FLIGHT, read_notes
from harness import LiveNode, donjon_env, run_cli, serve_initialised, start_node


def _function(root: Path) -> Path:
    fn = root / "slow-effect"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        "name: slow-effect\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 60\n"
    )
    (fn / "main.py").write_text(
        "import time\n\n\ndef handler(event, context):\n"
        "    if event.get('wait'):\n        time.sleep(50)\n    return {'ok': True}\n"
    )
    return fn


def _invoke_records(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    records = [json.loads(bytes(raw)) for (raw,) in rows]
    return [r for r in records if r["action"] == "function.invoke"]


def _call_in_background(node: LiveNode, key: str) -> threading.Thread:
    def call() -> None:
        with contextlib.suppress(httpx.HTTPError):  # killed under it: no answer is owed
            node.invoke("slow-effect", {"wait": True}, key=key)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_a_call_cut_by_sigkill_is_recorded_interrupted_at_the_next_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    node = start_node(data, measured=False)  # (SIGKILLed: it would never save coverage)
    again: LiveNode | None = None
    try:
        node.deploy(_function(tmp_path))
        key = node.create_key("killed-caller", "developer")
        answered = node.invoke("slow-effect", {}, key=key["key"])
        assert answered.status_code == 200, answered.text
        thread = _call_in_background(node, key["key"])
        journal = data / IN_FLIGHT
        for _ in range(600):  # until the call is under way (bounded: 60 s)
            if read_notes(journal):
                break
            time.sleep(0.1)
        (noted,) = read_notes(journal)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(30)
        thread.join(60)
        node.stop()
        before = _invoke_records(data / "donjon.db")
        assert [r["outcome"] for r in before] == ["ok"]  # the cut call: nothing, until now

        again = serve_initialised(data, node.admin_key, None, measured=False)
        records = _invoke_records(data / "donjon.db")
        assert [r["outcome"] for r in records] == ["ok", "interrupted"], records
        ok, cut = records
        # Named as the answered call of the same caller and function is.
        assert (cut["actor"], cut["target"]) == (ok["actor"], ok["target"]), records
        assert cut["detail"]["trigger"] == ok["detail"]["trigger"] == "invoke"
        assert cut["detail"]["request_id"] == noted.request_id != ok["detail"]["request_id"]
        # A clean stop and start: the call is not recorded twice.
        again.stop()
        again.serve_again(measured=False)
        assert [r["outcome"] for r in _invoke_records(data / "donjon.db")] == ["ok", "interrupted"]
        again.stop()
        verify = run_cli(donjon_env(data), "audit", "verify", "--output", "json", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        node.stop()
        if again is not None:
            again.stop()
