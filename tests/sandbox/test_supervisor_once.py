"""What the supervisor does once for every one-call worker (runtime/startup.py): its
bounding set emptied, Lambda's environment set, the bundle's finders made; each worker,
a copy of it, still ends confined as before."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)

HANDLER = """
import os, sys
import helper
def handler(event, context):
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    caps = {k: int(status[k].strip(), 16) for k in ("CapEff", "CapPrm", "CapInh", "CapBnd")}
    return {
        "caps": caps,
        "env": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "helper": helper.WHERE,
        "path": sys.path[:2],
    }
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    d = tmp_path / "fn"
    d.mkdir()
    (d / "main.py").write_text(HANDLER)
    (d / ".deps").mkdir()
    (d / ".deps" / "helper.py").write_text('WHERE = "deps"\n')
    for path in (d, d / ".deps", d / "main.py", d / ".deps" / "helper.py"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    tmp_path.chmod(0o755)
    return d


def _meta() -> bytes:
    return json.dumps(
        {"request_id": "r", "function": "oncetest", "version": 1, "deadline": time.time() + 30}
    ).encode()


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f)}


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _supervisors() -> list[int]:
    """The supervisors under this process: each interpreter running boot.py whose
    parent is not one (a worker's parent is its supervisor; bubblewrap is no python)."""
    out, todo = [], [(os.getpid(), b"")]
    while todo:
        pid, parent_cmd = todo.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            todo += [(child, cmd) for child in _children(pid)]
        except OSError:
            continue
        is_runtime = b"python" in cmd.split(b"\0")[0] and b"donjon_runtime/boot.py" in cmd
        if is_runtime and b"python" not in parent_cmd.split(b"\0")[0]:
            out.append(pid)
    return out


def test_supervisor_empties_its_bounding_set_and_workers_stay_confined(bundle: Path) -> None:
    """The supervisor's bounding set is empty while it keeps making workers; each
    worker holds no capability in any set, finds Lambda's environment, and imports
    from the bundle and its vendored dependencies."""
    config = InstanceConfig("oncetest", 1, bundle, "main", "handler", False, 64, 8, 2)

    async def go() -> tuple[list[dict[str, object]], list[dict[str, str]]]:
        host = SandboxHost.detect(bundle.parent / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        try:
            answers = []
            for _ in range(3):
                result = await pool.invoke(config, _meta(), b"{}", 10)
                answers.append(json.loads(result.body))
            sups = [_status(pid) for pid in _supervisors()]
            return answers, sups
        finally:
            await pool.close()

    answers, sups = asyncio.run(go())
    assert len(sups) == 1
    assert int(sups[0]["CapBnd"], 16) == 0
    assert int(sups[0]["CapEff"], 16) != 0  # it still makes namespaces for its workers
    for answer in answers:
        assert answer["caps"] == {"CapEff": 0, "CapPrm": 0, "CapInh": 0, "CapBnd": 0}
        assert answer["env"] == "oncetest"
        assert answer["helper"] == "deps"
        assert answer["path"] == ["/fn", "/fn/.deps"]
