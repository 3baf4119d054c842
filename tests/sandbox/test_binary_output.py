"""A call's captured output that is not text: bytes that are not UTF-8, or control
characters, each take six bytes of the reply's JSON head (``\\ufffd``, ``\\u0000``), so
64 KiB of them would be a head of 384 KiB, past the 256 KiB the gateway reads
(sandbox/replies.py MAX_HEAD). The runtime keeps the output's tail that fits
(runtime/call.py); the call's answer is never lost for what it printed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from donjon.sandbox import (
    CallResult,
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)

pytestmark = pytest.mark.slow

HANDLER = """
import os


def handler(event, context):
    if "byte" in event:
        os.write(1, bytes([event["byte"]]) * event["size"] + b"END")
    else:
        print(event["text"])
    return {"answer": event.get("size", 0)}
"""


def _meta() -> bytes:
    return json.dumps(
        {"request_id": "r", "function": "binout", "version": 1, "deadline": time.time() + 10}
    ).encode()


def _calls(tmp_path: Path, warm: bool, events: list[dict[str, Any]]) -> list[CallResult]:
    (tmp_path / "main.py").write_text(HANDLER)
    config = InstanceConfig("binout", 1, tmp_path, "main", "handler", warm, 64, 8, 1)

    async def go() -> list[CallResult]:
        host = SandboxHost.detect(tmp_path.parent / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        try:
            return [
                await pool.invoke(config, _meta(), json.dumps(event).encode(), 10)
                for event in events
            ]
        finally:
            await pool.close()

    return asyncio.run(go())


@pytest.mark.parametrize("byte", [0x00, 0xFF, 0x1B], ids=["nul", "not-utf8", "escape"])
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "invocation"])
def test_a_call_that_prints_binary_keeps_its_answer_and_its_outputs_tail(
    tmp_path: Path, warm: bool, byte: int
) -> None:
    """A call printing 60 KB of NUL, non-UTF-8 or ESC bytes gets its answer, the tail of
    its output and a note of what was cut; the call after it gets its own output."""
    size = 60_000
    first, second = _calls(tmp_path, warm, [{"byte": byte, "size": size}, {"text": "next call"}])
    assert json.loads(first.body) == {"answer": size}
    assert first.output.endswith("END")
    assert "dropped" in first.output.splitlines()[0]
    kept = first.output.split("\n", 1)[1]
    assert len(kept) > 16_000  # a tail that fits, not an emptied log
    assert json.loads(second.body) == {"answer": 0}
    assert second.output == "next call\n"
