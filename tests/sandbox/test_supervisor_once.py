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
from donjon.sandbox.limits import ResourceMode

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


def _meta(function: str) -> bytes:
    return json.dumps(
        {"request_id": "r", "function": function, "version": 1, "deadline": time.time() + 30}
    ).encode()


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f)}


def _supervisors(function: str) -> list[int]:
    """The supervisors of `function`'s sandboxes: each interpreter running boot.py in
    that function's cgroup (ResourceControl names it `<function>-v<version>-<tag>`) whose
    parent is not one (a worker's parent is its supervisor)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            groups = Path(f"/proc/{entry}/cgroup").read_text()
            parent = _status(int(entry))["PPid"]
            parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (OSError, KeyError):
            continue
        is_runtime = b"python" in cmd.split(b"\0")[0] and b"donjon_runtime/boot.py" in cmd
        ours = f"/{function}-v1-" in groups
        if is_runtime and ours and b"python" not in parent_cmd.split(b"\0")[0]:
            out.append(int(entry))
    return out


def test_supervisor_empties_its_bounding_set_and_workers_stay_confined(bundle: Path) -> None:
    """The supervisor's bounding set is empty while it keeps making workers; each
    worker holds no capability in any set, finds Lambda's environment, and imports
    from the bundle and its vendored dependencies."""
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no cgroup hierarchy here: the supervisor is found by its cgroup")
    function = f"oncetest{os.getpid()}"
    config = InstanceConfig(function, 1, bundle, "main", "handler", False, 64, 8, 2)

    async def go() -> tuple[list[dict[str, object]], list[dict[str, str]]]:
        host = SandboxHost.detect(bundle.parent / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        try:
            answers = []
            for _ in range(3):
                result = await pool.invoke(config, _meta(function), b"{}", 10)
                answers.append(json.loads(result.body))
            sups = [_status(pid) for pid in _supervisors(function)]
            return answers, sups
        finally:
            await pool.close()

    answers, sups = asyncio.run(go())
    assert len(sups) == 1
    assert int(sups[0]["CapBnd"], 16) == 0
    # It still makes namespaces for its workers (CAP_SYS_ADMIN) and brings their
    # loopback up (CAP_NET_ADMIN); CAP_SETPCAP went with the bounding set.
    assert int(sups[0]["CapEff"], 16) == 1 << 21 | 1 << 12
    assert int(sups[0]["CapPrm"], 16) == 1 << 21 | 1 << 12
    for answer in answers:
        assert answer["caps"] == {"CapEff": 0, "CapPrm": 0, "CapInh": 0, "CapBnd": 0}
        assert answer["env"] == function
        assert answer["helper"] == "deps"
        assert answer["path"] == ["/fn", "/fn/.deps"]
