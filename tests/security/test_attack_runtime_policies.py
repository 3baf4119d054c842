"""Runtime policies (donjon.yaml `policies:`): what a call may do beyond its handler.

`sec-policy` is deployed three ways: with the defaults (child processes
blocked), with every policy on alert, and with every policy on block; each
in both isolation modes. Each attack is a real call; blocks and alerts are
checked in the audit log (`policy.block` / `policy.alert`, one per call and
policy).
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

import pytest

from donjon.bundle import build_bundle
from harness import FUNCTIONS, LiveNode

_ALL = "policies: {{child_processes: {0}, tmp_write: {0}, read_own_code: {0}}}\n"


def _deploy(node: LiveNode, tmp: pytest.TempPathFactory, name: str, extra: str) -> str:
    copy = tmp.mktemp(name)
    shutil.copytree(FUNCTIONS / "sec-policy", copy, dirs_exist_ok=True)
    text = (copy / "donjon.yaml").read_text().replace("name: sec-policy", f"name: {name}")
    (copy / "donjon.yaml").write_text(text + extra)
    node.deploy(Path(copy))
    return name


@pytest.fixture(scope="module", params=["invocation", "warm"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def defaults(node: LiveNode, tmp_path_factory: pytest.TempPathFactory, mode: str) -> str:
    """The function with no `policies:` at all."""
    return _deploy(node, tmp_path_factory, f"pol-default-{mode}", f"isolation: {mode}\n")


@pytest.fixture(scope="module")
def alerting(node: LiveNode, tmp_path_factory: pytest.TempPathFactory, mode: str) -> str:
    extra = f"isolation: {mode}\n" + _ALL.format("alert")
    return _deploy(node, tmp_path_factory, f"pol-alert-{mode}", extra)


@pytest.fixture(scope="module")
def blocking(node: LiveNode, tmp_path_factory: pytest.TempPathFactory, mode: str) -> str:
    extra = f"isolation: {mode}\n" + _ALL.format("block")
    return _deploy(node, tmp_path_factory, f"pol-block-{mode}", extra)


def _call(node: LiveNode, name: str, op: str) -> tuple[dict[str, Any], str]:
    r = node.invoke(name, {"op": op})
    assert r.status_code == 200, r.text
    return r.json(), r.headers["x-request-id"]


def _policy_records(node: LiveNode, request_id: str) -> list[dict[str, Any]]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 500}).json()
    return [
        r
        for r in records
        if r["action"].startswith("policy.") and r["detail"].get("request_id") == request_id
    ]


def _one_record(node: LiveNode, request_id: str, action: str, policy: str) -> dict[str, Any]:
    found = [r for r in _policy_records(node, request_id) if r["detail"]["policy"] == policy]
    assert len(found) == 1, found
    assert found[0]["action"] == action, found
    return found[0]


@pytest.mark.parametrize("op", ["subprocess", "fork", "posix_spawn", "exec"])
def test_child_process_is_refused_by_default(node: LiveNode, defaults: str, op: str) -> None:
    """With no policy declared, fork, vfork/posix_spawn, subprocess and exec fail with EPERM."""
    out, request_id = _call(node, defaults, op)
    assert out == {"refused": "EPERM"}
    record = _one_record(node, request_id, "policy.block", "child_processes")
    assert record["outcome"] == "blocked"
    assert record["detail"]["function"] == defaults
    assert record["detail"]["seen"] in ("fork", "vfork", "clone", "execve", "execveat")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="raw system call numbers of x86_64")
def test_raw_clone_system_call_is_refused_by_default(node: LiveNode, defaults: str) -> None:
    """clone(SIGCHLD) made by the raw system call, past libc, gets EPERM and is recorded."""
    out, request_id = _call(node, defaults, "raw_clone")
    assert out == {"refused": "EPERM"}
    assert _one_record(node, request_id, "policy.block", "child_processes")["detail"]["seen"] == (
        "clone"
    )


@pytest.mark.skipif(platform.machine() != "x86_64", reason="raw system call numbers of x86_64")
def test_raw_clone3_system_call_is_refused(node: LiveNode, defaults: str) -> None:
    """clone3, whose flags the filter cannot read, gets ENOSYS (libc falls back to clone)."""
    out, _ = _call(node, defaults, "raw_clone3")
    assert out == {"refused": "ENOSYS"}


@pytest.mark.parametrize("which", ["defaults", "alerting"])
def test_process_record_does_not_depend_on_the_reply(
    node: LiveNode, defaults: str, alerting: str, which: str
) -> None:
    """A call that tries a process then dies without replying still leaves its record."""
    name = defaults if which == "defaults" else alerting
    r = node.invoke(name, {"op": "fork_then_die"})
    assert r.status_code == 502, r.text
    action = "policy.block" if which == "defaults" else "policy.alert"
    _one_record(node, r.headers["x-request-id"], action, "child_processes")


def test_threads_still_work_when_processes_are_blocked(node: LiveNode, defaults: str) -> None:
    """Blocking child processes leaves threads alone (clone with CLONE_THREAD)."""
    out, request_id = _call(node, defaults, "thread")
    assert out == {"ran": 1}
    assert _policy_records(node, request_id) == []


def test_many_attempts_in_one_call_write_one_record(node: LiveNode, defaults: str) -> None:
    """subprocess tries several ways (vfork, then fork...): still one block record per call."""
    _, request_id = _call(node, defaults, "subprocess")
    assert len(_policy_records(node, request_id)) == 1


@pytest.mark.parametrize("op", ["subprocess", "fork", "posix_spawn"])
def test_child_process_under_alert_runs_and_is_audited(
    node: LiveNode, alerting: str, op: str
) -> None:
    """child_processes: alert lets the process run and writes a policy.alert record."""
    out, request_id = _call(node, alerting, op)
    assert out == {"ran": 0 if op != "fork" else 3}
    record = _one_record(node, request_id, "policy.alert", "child_processes")
    assert record["outcome"] == "alert"


@pytest.mark.parametrize("op", ["write_tmp", "write_shm"])
def test_tmp_write_is_refused_under_block(node: LiveNode, blocking: str, op: str) -> None:
    """tmp_write: block makes the call's /tmp and /dev/shm read-only (EROFS)."""
    out, _ = _call(node, blocking, op)
    assert out == {"refused": "EROFS"}


def test_tmp_write_under_alert_is_audited(node: LiveNode, alerting: str) -> None:
    """tmp_write: alert lets the write happen and writes a policy.alert record."""
    out, request_id = _call(node, alerting, "write_tmp")
    assert out == {"ran": 0}
    record = _one_record(node, request_id, "policy.alert", "tmp_write")
    assert "/tmp/note" in record["detail"]["seen"]


def test_tmp_write_is_allowed_by_default(node: LiveNode, defaults: str) -> None:
    """With no policy declared, a call may write its /tmp, and nothing is recorded."""
    out, request_id = _call(node, defaults, "write_tmp")
    assert out == {"ran": 0}
    assert _policy_records(node, request_id) == []


@pytest.mark.parametrize("op", ["read_code", "read_code_relative", "list_code", "read_proc_root"])
def test_reading_own_code_is_refused_under_block(node: LiveNode, blocking: str, op: str) -> None:
    """read_own_code: block hides /fn once the handler is imported (EACCES), by any path."""
    out, _ = _call(node, blocking, op)
    assert out == {"refused": "EACCES"}


def test_reading_own_code_under_alert_is_audited(node: LiveNode, alerting: str) -> None:
    """read_own_code: alert lets the read happen and writes a policy.alert record."""
    out, request_id = _call(node, alerting, "read_code")
    assert out["ran"] > 0
    record = _one_record(node, request_id, "policy.alert", "read_own_code")
    assert record["detail"]["seen"] == "open /fn/main.py"


def test_reading_own_code_is_allowed_by_default(node: LiveNode, defaults: str) -> None:
    """With no policy declared, a call may read its bundle."""
    out, request_id = _call(node, defaults, "read_code")
    assert out["ran"] > 0
    assert _policy_records(node, request_id) == []


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_import_that_spawns_is_refused_at_deploy(node: LiveNode, tmp_path: Path, mode: str) -> None:
    """Under the default block, an import that starts a process fails the deploy, saying why."""
    (tmp_path / "donjon.yaml").write_text(
        f"name: pol-import-spawn-{mode}\nhandler: main.handler\nisolation: {mode}\n"
    )
    (tmp_path / "main.py").write_text(
        "import subprocess\n"
        "subprocess.run(['/usr/bin/true'], check=True)\n"
        "def handler(event, context):\n    return {}\n"
    )
    _, archive = build_bundle(tmp_path)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    assert r.status_code == 422, r.text
    assert "PermissionError: [Errno 1] Operation not permitted" in r.json()["detail"]
