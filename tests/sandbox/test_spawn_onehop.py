"""A cold start's argv, cgroup and launcher come from one hop of the spawning thread on
cgroup v1 (spawn.py `make_and_start`): what fails there fails the start cleanly."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    SandboxUnavailable,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.instance_cgroups import InstanceCgroups
from donjon.sandbox.limits import Cgroup, ResourceMode
from donjon.sandbox.spawn import _spawners

ECHO = "def handler(event, context):\n    return {'ok': True}\n"


def _meta(function: str) -> bytes:
    meta = {"request_id": "r", "function": function, "version": 1, "deadline": time.time() + 30}
    return json.dumps(meta).encode()


@pytest.mark.slow
def test_a_cgroup_that_cannot_be_made_refuses_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the sandbox's cgroup cannot be made (cgroupfs refuses the mkdir), the start is
    refused with a clear error, no launcher runs, and the next start, once cgroups can be
    made again, serves its call (the spawning thread is not left broken)."""
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    bundle = tmp_path / "fn"
    bundle.mkdir()
    (bundle / "main.py").write_text(ECHO)
    real_make = InstanceCgroups.make

    def refused(self: InstanceCgroups) -> Cgroup | None:
        raise OSError(28, "No space left on device")

    async def go() -> tuple[BaseException | None, bytes]:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        cfg = InstanceConfig("onehop", 1, bundle, "main", "handler", True, 64, 8, 1)
        refusal: BaseException | None = None
        try:
            monkeypatch.setattr(InstanceCgroups, "make", refused)
            try:
                await pool.invoke(cfg, _meta("onehop"), b"{}", 20)
            except SandboxUnavailable as e:
                refusal = e
            monkeypatch.setattr(InstanceCgroups, "make", real_make)
            result = await pool.invoke(cfg, _meta("onehop"), b"{}", 20)
            return refusal, result.body
        finally:
            await pool.close()

    refusal, body = asyncio.run(go())
    assert refusal is not None
    assert "cgroup could not be made" in str(refusal)
    assert "No space left on device" in str(refusal)
    assert json.loads(body) == {"ok": True}
    assert not any(s.broken for s in _spawners.values())
