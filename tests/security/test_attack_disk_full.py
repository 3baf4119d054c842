"""The node's data dir fills up: calls and changes fail closed and clearly, nothing accepted
is lost, and the node recovers by itself once space is freed.

Each attack starts a real node (tests/harness.py) whose whole data dir (its SQLite store
and audit log, bundles, function logs, checkpoints) is on a small tmpfs of its own, then
fills that filesystem with a file of the test's until writes fail with ENOSPC (nothing
left), and looks at what the node does: the answers (a clear 503 problem, never a 2xx
without its record, never a hang), what it kept (nothing half-made, nothing accepted
lost), its audit writer, `donjon doctor`, and `donjon audit verify` once the file is
deleted, without a restart of the node (or after a SIGKILL and a restart). The node's
log is kept outside the tmpfs, so the reasons it gives can be read while it is full.

Mounting needs root (CAP_SYS_ADMIN): where it is refused, the attacks skip and say so.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from async_support import bundle, invoke_async, wait_for
from crash_support import (
    audit_writers,
    deploy,
    kill_node,
    query,
    records,
    verify_intact,
)
from disk_support import fill_with
from harness import LiveNode, run_cli, start_node

pytestmark = pytest.mark.slow  # nodes of their own, on filesystems of their own

#: The tmpfs's size: the data dir of a node with a few functions and the advisory cache
#: copied into it takes about 5 MiB.
SIZE_MIB = 24
ECHO = "def handler(event, context):\n    return event\n"
WEB = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi'}\n"
#: An async function slow enough that calls are still queued when the disk fills.
SLOW = "import time\ndef handler(event, context):\n    time.sleep(0.2)\n    return event\n"


#: The async queue's lease for the SIGKILL attack (DONJON_QUEUE_LEASE_S).
LEASE = {"DONJON_QUEUE_LEASE_S": "5"}
#: The running node's look at the audit outbox (DONJON_AUDIT_OUTBOX_DRAIN_S, 30 s).
DRAIN = {"DONJON_AUDIT_OUTBOX_DRAIN_S": "2"}


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""


class Disk:
    """A tmpfs holding a node's data dir, and a file that fills it."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler"

    def fill(self) -> None:
        """Write the filler until the filesystem has no block left (ENOSPC)."""
        fill_with(self.filler)

    def leave(self, room: int) -> None:
        """Give `room` bytes back to the filesystem (the filler, shortened)."""
        size = self.filler.stat().st_size
        with open(self.filler, "r+b") as f:
            f.truncate(max(0, size - room))

    def free(self) -> None:
        self.filler.unlink()


@contextlib.contextmanager
def node_on_small_disk(
    tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[LiveNode, Disk]]:
    """A node whose data dir is on a tmpfs of SIZE_MIB; its log outside, in `tmp_path`;
    `extra_env` for its server."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0700", "tmpfs", str(mount)],  # noqa: S607 - the system's mount, by PATH
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the node's data dir: {done.stderr.strip()}")
    node = None
    try:
        data = mount / "data"
        data.mkdir(mode=0o700)
        (data / "serve.log").symlink_to(tmp_path / "serve.log")
        node = start_node(data, extra_env)
        yield node, Disk(mount)
    finally:
        if node is not None:
            node.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)  # noqa: S607 - the system's umount


def serve_log(node: LiveNode) -> str:
    return (node.data_dir / "serve.log").read_text(errors="replace")


def refused_for_space(r: httpx.Response) -> None:
    """A full disk's answer: a 503 problem saying the storage is full, nothing else."""
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert "storage is full" in r.json()["detail"], r.text
    assert "retry-after" in r.headers


def invoked(node: LiveNode) -> list[str]:
    """The request ids of the successful calls in the node's audit log."""
    return [
        r["detail"]["request_id"] for r in records(node, "function.invoke") if r["outcome"] == "ok"
    ]


def test_sync_calls_on_a_full_disk_fail_closed_and_recover(tmp_path: Path) -> None:
    """Calls of an invocation and a warm function on a full disk (the invoke API, an http
    trigger, the Lambda Invoke API) are 503s; once freed, 200s, and every call answered
    200 is in a log that verifies."""
    with node_on_small_disk(tmp_path) as (node, disk):
        src = tmp_path / "src"
        assert deploy(node, bundle(src, "echo", ECHO)).status_code == 201
        assert deploy(node, bundle(src, "echow", ECHO, "isolation: warm\n")).status_code == 201
        web = "triggers:\n  - http: {path: /web, methods: [GET], auth: key}\n"
        assert deploy(node, bundle(src, "web", WEB, web)).status_code == 201
        ok = []
        for name in ("echo", "echow"):
            r = node.invoke(name, {"n": 1})
            assert r.status_code == 200, r.text
            ok.append(r.headers["x-request-id"])
        disk.fill()
        for name in ("echo", "echow"):
            for n in range(3):
                refused_for_space(node.invoke(name, {"n": n}))
        with node.client() as c:  # an http trigger, AWS Lambda's Invoke API
            refused_for_space(c.get("/fn/web"))
            refused_for_space(c.post("/2015-03-31/functions/echo/invocations", content=b"{}"))
        assert node.proc.poll() is None
        disk.free()
        for name in ("echo", "echow"):
            r = node.invoke(name, {"n": 9})
            assert r.status_code == 200, r.text
            ok.append(r.headers["x-request-id"])
        with node.client() as c:
            assert c.get("/fn/web").status_code == 200
        assert set(ok) <= set(invoked(node))
        verify_intact(node)


@pytest.mark.parametrize("room_kib", [16, 256])
def test_calls_on_a_nearly_full_disk_are_answered_only_when_recorded(
    tmp_path: Path, room_kib: int
) -> None:
    """On a disk left with a little room, calls that fill it are 200s or 503s, never
    anything else; every 200 is in the log, which verifies once space is freed."""
    with node_on_small_disk(tmp_path) as (node, disk):
        assert deploy(node, bundle(tmp_path / "src", "echo", ECHO)).status_code == 201
        disk.fill()
        disk.leave(room_kib << 10)
        ok, refused = [], 0
        for n in range(60):
            r = node.invoke("echo", {"n": n, "pad": "x" * 2000})
            if r.status_code == 200:
                ok.append(r.headers["x-request-id"])
            else:
                refused_for_space(r)
                refused += 1
        print(f"\n{room_kib} KiB left: {len(ok)} answered 200, {refused} refused")
        disk.free()
        assert node.invoke("echo", {"n": 99}).status_code == 200
        assert set(ok) <= set(invoked(node))
        verify_intact(node)


def test_async_calls_on_a_full_disk_are_kept_or_refused(tmp_path: Path) -> None:
    """Async calls accepted (202) before or while the disk is full all run once it is freed;
    those refused are 503s."""
    with node_on_small_disk(tmp_path) as (node, disk):
        extra = "limits: {concurrency: 1}\nretry: {attempts: 3, backoff_s: 0.2, max_age_s: 600}\n"
        assert deploy(node, bundle(tmp_path / "src", "slow", SLOW, extra)).status_code == 201
        accepted = []
        for n in range(6):
            r = invoke_async(node, "slow", {"n": n})
            assert r.status_code == 202, r.text
            accepted.append(r.json()["invocation_id"])
        disk.fill()
        for n in range(3):
            r = invoke_async(node, "slow", {"n": 10 + n})
            if r.status_code == 202:
                accepted.append(r.json()["invocation_id"])
            else:
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
        disk.free()
        for invocation_id in accepted:
            assert wait_for(node, invocation_id)["status"] == "succeeded", invocation_id
        verify_intact(node)


def test_admin_changes_on_a_full_disk_are_refused_whole(tmp_path: Path) -> None:
    """A key or a secret made on a full disk is refused (503) and nothing of it is kept;
    once freed, the same changes are made and audited."""
    with node_on_small_disk(tmp_path) as (node, disk):
        disk.fill()
        with node.client() as c:
            refused_for_space(c.post("/v1/keys", json={"name": "k-full", "role": "invoker"}))
            refused_for_space(c.post("/v1/secrets/s-full", json={"value": "v"}))
        disk.free()
        assert [n for (n,) in query(node, "SELECT name FROM api_keys")] == ["admin"]
        assert query(node, "SELECT name FROM secrets") == []
        assert query(node, "SELECT id FROM audit_outbox") == []
        assert [r["target"] for r in records(node, "secret.set")] == []
        made = node.create_key("k-full", "invoker")
        with node.client() as c:
            assert c.post("/v1/secrets/s-full", json={"value": "v"}).status_code == 201
        assert [r["target"] for r in records(node, "key.create")][-1] == f"key:{made['id']}"
        assert [r["target"] for r in records(node, "secret.set")] == ["secret:s-full"]
        verify_intact(node)


#: Bytes left on the disk for each admin change of the nearly-full attack: some fit the
#: change and not its record, or the change and its record and not the outbox's cleanup.
ROOMS_KIB = (4, 8, 12, 16, 24, 32, 48)


def test_admin_changes_on_a_nearly_full_disk_are_answered_as_they_ended(tmp_path: Path) -> None:
    """Secrets set on a disk left with a little room: a 201 is kept and audited; a 503
    saying nothing was changed changed nothing; a 503 for a change made says so and
    keeps its record, which reaches the log once space is freed, without a restart."""
    with node_on_small_disk(tmp_path, DRAIN) as (node, disk):
        outcomes = []
        for room in ROOMS_KIB:
            name = f"s{room}"
            disk.fill()
            disk.leave(room << 10)
            with node.client() as c:
                r = c.post(f"/v1/secrets/{name}", json={"value": "v" * 50})
            disk.free()
            kept = bool(query(node, "SELECT name FROM secrets WHERE name = ?", name))
            logged = [x for x in records(node, "secret.set") if x["target"] == f"secret:{name}"]
            waiting = [
                e for (e,) in query(node, "SELECT event FROM audit_outbox") if f"secret:{name}" in e
            ]
            outcomes.append((room, r.status_code, kept, len(logged), len(waiting)))
            if r.status_code == 201:
                assert kept and logged, outcomes
                continue
            if kept:  # a change made, its record not appended within the retries
                # Said as made, and not as a refusal to send again (no 503, no Retry-After):
                # a client that repeated it would set the secret twice.
                assert r.status_code == 500, (r.status_code, r.text)
                assert "retry-after" not in r.headers
                assert "the change was made" in r.json()["detail"], r.text
                assert logged or waiting, outcomes
            else:
                refused_for_space(r)
                assert "nothing was changed" in r.json()["detail"], r.text
                assert not logged, (outcomes, r.text)
        print(f"\n(room KiB, status, kept, in the log, in the outbox): {outcomes}")
        # Without a restart, every change kept gets its record in the log.
        deadline = time.monotonic() + 90
        while query(node, "SELECT id FROM audit_outbox") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert query(node, "SELECT id FROM audit_outbox") == []
        logged_names = {x["target"] for x in records(node, "secret.set")}
        assert {f"secret:{n}" for (n,) in query(node, "SELECT name FROM secrets")} <= logged_names
        verify_intact(node)


def test_change_that_failed_on_a_full_disk_is_not_audited_as_made(tmp_path: Path) -> None:
    """A key whose store write failed for space is not in the log as created, even when
    space comes back while its record is being retried."""
    # The key's transaction (the key and its outbox row) fails to commit; the record is
    # then appended on retry once the filler is deleted: a record of a change never made.
    with node_on_small_disk(tmp_path) as (node, disk):
        disk.fill()
        answer: list[httpx.Response] = []

        def create() -> None:
            with node.client() as c:
                answer.append(c.post("/v1/keys", json={"name": "k-ghost", "role": "invoker"}))

        sender = threading.Thread(target=create, daemon=True)
        sender.start()
        deadline = time.monotonic() + 30
        while sender.is_alive() and time.monotonic() < deadline:
            if "the record of key.create is tried again" in serve_log(node):
                break
            time.sleep(0.02)
        disk.free()
        sender.join(60)
        assert answer and answer[0].status_code in (201, 503), answer
        keys = {f"key:{i}" for (i,) in query(node, "SELECT id FROM api_keys")}
        for record in records(node, "key.create"):
            assert record["target"] in keys, f"audited as created, never made: {record}"
        assert (answer[0].status_code == 201) == (len(keys) == 2), answer[0].text
        verify_intact(node)


def test_release_refused_on_a_full_disk_leaves_the_function_quarantined(
    tmp_path: Path,
) -> None:
    """A release that could not be stored (503, the storage is full) releases nothing:
    once space is back the function still answers 503 Function.Quarantined (before, the
    node had dropped it from its set already, so it served again until a restart, while
    the store, and every other node, still held it quarantined)."""
    with node_on_small_disk(tmp_path) as (node, disk):
        deploy(node, bundle(tmp_path / "src", "held", ECHO))
        with node.client() as c:
            r = c.post("/v1/functions/held/quarantine", json={"reason": "under review"})
            assert r.status_code == 201, r.text
            disk.fill()
            refused_for_space(c.post("/v1/functions/held/release"))
            disk.free()
            call = c.post("/v1/functions/held/invoke", json={})
            listed = c.get("/v1/responses").json()["quarantined"]
        assert call.status_code == 503 and call.json()["errorType"] == "Function.Quarantined"
        assert [q["function"] for q in listed] == ["held"]
        assert query(node, "SELECT name FROM quarantines") == [("held",)]


def test_throttle_lift_refused_on_a_full_disk_lifts_nothing(tmp_path: Path) -> None:
    """Lifting a throttle whose record cannot be written (a full disk) is refused and
    lifts nothing: every lift is in the audit log (before, the throttle was gone though
    the answer was a 503 and no `response.unthrottle` record was ever written)."""
    with node_on_small_disk(tmp_path) as (node, disk):
        suspect = node.create_key("suspect", "invoker")["id"]
        subject = f"principal:key:{suspect}"
        with node.client() as c:
            r = c.put(f"/v1/throttles/{subject}", json={"reason": "looking into it"})
            assert r.status_code == 201, r.text
            disk.fill()
            refused = c.delete(f"/v1/throttles/{subject}")
            disk.free()
            throttled = [t["subject"] for t in c.get("/v1/responses").json()["throttles"]]
        assert refused.status_code == 503, refused.text
        assert subject in throttled
        assert records(node, "response.unthrottle") == []


def test_deploy_on_a_full_disk_leaves_no_version_and_no_files(tmp_path: Path) -> None:
    """A deploy on a full disk is refused (503): no version stored, no bundle files left;
    once freed, it deploys."""
    with node_on_small_disk(tmp_path) as (node, disk):
        src = tmp_path / "src"
        assert deploy(node, bundle(src, "echo", ECHO)).status_code == 201
        files_before = sorted(p.name for p in node.data_dir.rglob("*") if "bundles" in p.parts)
        disk.fill()
        refused_for_space(deploy(node, bundle(src / "big", "big", ECHO + "#" * 200_000)))
        disk.free()
        assert query(node, "SELECT name FROM function_versions WHERE name = 'big'") == []
        files_after = sorted(p.name for p in node.data_dir.rglob("*") if "bundles" in p.parts)
        assert files_after == files_before
        assert not [p for p in node.data_dir.rglob("*") if p.name.startswith((".tmp", "tmp"))]
        assert deploy(node, bundle(src / "big", "big", ECHO + "#" * 200_000)).status_code == 201
        assert node.invoke("big", {"n": 1}).status_code == 200
        verify_intact(node)


def test_audit_writer_on_a_full_disk_stays_and_says_why(tmp_path: Path) -> None:
    """The audit writer neither dies nor restarts on a full disk; the log names the
    reason, `donjon doctor` names the full disk, `donjon audit verify` still checks the
    log, /healthz says alive (no restart is needed) and /readyz not ready until freed."""
    with node_on_small_disk(tmp_path) as (node, disk):
        assert deploy(node, bundle(tmp_path / "src", "echo", ECHO)).status_code == 201
        writers = audit_writers(node)
        assert len(writers) == 1
        disk.fill()
        for n in range(8):
            refused_for_space(node.invoke("echo", {"n": n}))
        assert audit_writers(node) == writers
        assert "database or disk is full" in serve_log(node)
        doctor = run_cli(node.env(), "doctor", "--output", "json", check=False)
        assert json.loads(doctor.stdout)["data_dir_space"]["full"] is True, doctor.stdout
        # The log can be checked on the full disk (the incremental state, not saved).
        checked = run_cli(node.env(), "audit", "verify", "--output", "json", check=False)
        assert checked.returncode == 0, checked.stderr[-2000:]
        assert json.loads(checked.stdout)["ok"] is True, checked.stdout
        assert not list(node.data_dir.glob("*.tmp"))
        with node.client(key="") as c:  # as a balancer probes: alive, not ready
            assert c.get("/healthz").status_code == 200
            ready = c.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json() == {"status": "not ready"}  # public: the verdict only
        assert "readiness: not ready (data dir: full, " in serve_log(node)
        disk.free()
        with node.client(key="") as c:
            assert c.get("/readyz").status_code == 200
        assert "readiness: ready again" in serve_log(node)
        assert node.invoke("echo", {"n": 9}).status_code == 200
        assert audit_writers(node) == writers
        verify_intact(node)


def test_node_killed_on_a_full_disk_restarts_with_nothing_lost(tmp_path: Path) -> None:
    """A node SIGKILLed while its disk is full refuses to start on it, and starts once
    freed: its log verifies, every 2xx call is in it, every 202'd call runs, every key
    made works."""
    # A short lease: the async call the kill interrupted runs again 5 s after it, not 60.
    with node_on_small_disk(tmp_path, LEASE) as (node, disk):
        src = tmp_path / "src"
        assert deploy(node, bundle(src, "echo", ECHO)).status_code == 201
        extra = "limits: {concurrency: 1}\n"
        assert deploy(node, bundle(src, "slow", SLOW, extra)).status_code == 201
        key = node.create_key("before", "invoker")
        ok = [node.invoke("echo", {"n": 1}).headers["x-request-id"]]
        accepted = []
        for n in range(5):
            r = invoke_async(node, "slow", {"n": n})
            assert r.status_code == 202, r.text
            accepted.append(r.json()["invocation_id"])
        disk.fill()
        for n in range(3):
            assert node.invoke("echo", {"n": n}).status_code >= 500
        kill_node(node)
        # Started again on the still full disk, it refuses to serve, and says why: the
        # cause in one line, then the full filesystem and the remedy; never that it serves.
        before = len(serve_log(node))
        with pytest.raises(AssertionError, match="database or disk is full"):
            node.serve_again(LEASE)
        restart = serve_log(node)[before:]
        assert "error: the node could not start: " in restart
        assert "hint: the data dir's filesystem is full (" in restart
        assert "serving on" not in restart, restart
        disk.free()
        node.serve_again(LEASE)
        verify_intact(node)
        assert set(ok) <= set(invoked(node))
        for invocation_id in accepted:
            assert wait_for(node, invocation_id)["status"] == "succeeded", invocation_id
        assert node.invoke("echo", {}, key=key["key"]).status_code == 200
        verify_intact(node)
