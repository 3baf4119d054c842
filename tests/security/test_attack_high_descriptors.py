"""A worker inherits no descriptor of its sandbox's, whatever its number (helper-124's
review). The supervisor's control socket to the gateway keeps the number the gateway
gave it; the worker closed descriptors only up to 65,535, so in a gateway holding more
(its open-file limit raised: gateway/open_files.py, or set high by the host) a function
found the supervisor's channel to the gateway open and could write to it.

The attack: the gateway's process (here the test's own, which runs the pool) holds
descriptors up to past 65,600, so the sandbox's sockets are made above them; the
function then looks for any open descriptor from 65,536 up. The test raises its own
open-file limit for the while: it is skipped where the host does not let it (a hard limit
below 65,600 and no CAP_SYS_RESOURCE, as on the machine this was written on, whose hard
limit is 20,000: there the leak was shown with the worker's bound patched down to 1,000
and descriptors past 1,100, and is gone with the fix)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)
from sec_support import call_meta

pytestmark = pytest.mark.slow

ABOVE = 65536
HIGHEST = ABOVE + 2048

HANDLER = f"""
import os


def handler(event, context):
    found = []
    for fd in range({ABOVE}, {HIGHEST}):
        try:
            os.fstat(fd)
        except OSError:
            continue
        found.append(fd)
    return {{"open_above": found}}
"""


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "invocation"])
def test_a_worker_holds_no_descriptor_numbered_past_65535(tmp_path: Path, warm: bool) -> None:
    (tmp_path / "main.py").write_text(HANDLER)
    config = InstanceConfig("highfds", 1, tmp_path, "main", "handler", warm, 64, 8, 1)
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGHEST, max(HIGHEST, limits[1])))
    except (ValueError, OSError) as e:
        pytest.skip(f"this process may not hold {HIGHEST} descriptors (limits {limits}): {e}")
    base = os.open("/dev/null", os.O_RDONLY)
    fillers: list[int] = []
    try:
        while not fillers or fillers[-1] < ABOVE + 64:  # what the pool opens comes after
            fillers.append(os.dup(base))

        async def go() -> Any:
            host = SandboxHost.detect(tmp_path.parent / "data")
            pool = SandboxPool(detect_resource_control(), compile_filters(), host)
            try:
                result = await pool.invoke(config, call_meta("highfds"), b"{}", 30)
                return json.loads(result.body)
            finally:
                await pool.close()

        seen = asyncio.run(go())
    finally:
        for fd in fillers:
            os.close(fd)
        os.close(base)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    assert seen == {"open_above": []}, seen
