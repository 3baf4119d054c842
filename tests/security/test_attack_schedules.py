"""Attacks on schedule triggers with a real node: a scheduled call that outlives the node's
stop; a manifest of thousands of schedules.

A scheduled call is not an HTTP request, so the server's shutdown did not wait for it, nor
end it after the grace period (DONJON_SHUTDOWN_GRACE_S): the scheduler's stop waited for
it to end by itself, up to its `timeout_s` (900 s at most). A node told to stop (SIGTERM)
while a long scheduled call ran did not stop; the supervisor (`donjon up` after the grace
and 30 s, systemd, Kubernetes) then killed it, and the call, which had run, had no audit
record. Now it gets the grace period, then its sandbox is ended and its record written.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from crash_support import kill_node, records
from donjon.manifest.model import MAX_SCHEDULES
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow  # waits for a minute to start, a node of its own

SLEEPER = (
    "import time\ndef handler(event, context):\n    time.sleep(600)\n    return {'slept': True}\n"
)


def _targz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _sleep_past_the_next_minute(seconds: float) -> None:
    """Sleep until `seconds` past the next whole minute (UTC), when a schedule fires."""
    now = dt.datetime.now(dt.UTC)
    target = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1, seconds=seconds)
    time.sleep((target - now).total_seconds())


def test_a_scheduled_call_running_at_stop_gets_the_grace_then_is_ended_and_audited(
    tmp_path: Path,
) -> None:
    """SIGTERM while a scheduled call sleeps: the node ends it after its grace period, writes
    its record and exits, as it does for calls over HTTP and async deliveries."""
    node = start_node(tmp_path / "node", {"DONJON_SHUTDOWN_GRACE_S": "1"}, measured=False)
    try:
        fn = tmp_path / "sched-sleeper"
        fn.mkdir()
        (fn / "donjon.yaml").write_text(
            "name: sched-sleeper\nhandler: main.handler\ntimeout_s: 900\n"
            "triggers:\n  - schedule: '* * * * *'\n"
        )
        (fn / "main.py").write_text(SLEEPER)
        node.deploy(fn)
        _sleep_past_the_next_minute(5)  # the call has started and sleeps
        node.proc.terminate()
        try:
            node.proc.wait(90)  # grace 1 s; the old node waited out the call's 600 s
        except subprocess.TimeoutExpired:
            kill_node(node)
            pytest.fail("the node did not stop while a scheduled call ran")
        node.stop()
    finally:
        if node.proc.poll() is None:
            kill_node(node)
    calls = [r for r in records(node, "function.invoke") if r["actor"] == "schedule"]
    assert len(calls) == 1, calls
    assert calls[0]["outcome"] != "ok", calls[0]


def test_a_manifest_of_thousands_of_schedules_is_refused_at_deploy(node: LiveNode) -> None:
    """2,000 schedule triggers and more fit in a 64 KiB manifest: each parsed was ~6 KB of
    the node's memory for as long as the function was deployed (15 MB a function, 15 GB
    for a developer's 1,000), and half a second of the deploy's CPU. At most MAX_SCHEDULES are
    taken (one expression's lists name any set of minutes); more is refused, with why."""
    lines = [f"  - schedule: '{i % 60} {i // 60 % 24} * * *'" for i in range(2000)]
    manifest = "name: sched-many\nhandler: main.handler\ntriggers:\n" + "\n".join(lines)
    archive = _targz(  # by hand: build_bundle checks the manifest first, as the node does
        {
            "donjon.yaml": manifest.encode() + b"\n",
            "main.py": b"def handler(event, context):\n    return None\n",
        }
    )
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
        assert r.status_code == 422, r.text
        assert f"at most {MAX_SCHEDULES} schedule triggers" in r.text, r.text
        assert c.get("/v1/functions/sched-many").status_code == 404
