"""The node starts its egress proxy with the sandboxes and stops it with them."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

from donjon.bootstrap import initialize
from donjon.config import Settings
from donjon.gateway.assembly import open_node


def test_the_node_runs_an_egress_proxy_for_its_sandboxes(tmp_path: Path) -> None:
    """node.egress serves a socket owned by the sandbox user; stopping removes it."""
    settings = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(settings)
    node = open_node(settings)
    seen: dict[str, object] = {}

    async def go() -> None:
        await node.start()
        try:
            assert node.egress is not None and node.pool is not None
            # A sandbox user's ids when the node runs as root (as SandboxHost.ids_for gives).
            uid, gid = (100_123, 100_123) if os.geteuid() == 0 else (None, None)
            sandbox = await node.egress.open_sandbox(
                "fn", 1, ["api.example.com:443"], "alert", uid, gid
            )
            info = os.stat(sandbox.socket_path)
            seen["mode"] = stat.S_IMODE(info.st_mode)
            seen["owner"] = (info.st_uid, info.st_gid)
            seen["ids"] = (uid, gid)
            seen["dir"] = sandbox.socket_dir
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                await asyncio.to_thread(s.connect, str(sandbox.socket_path))
                await asyncio.to_thread(s.sendall, b"DONJON-EGRESS/1 nope\n")
                seen["answer"] = await asyncio.to_thread(s.recv, 4096)
        finally:
            await node.stop()

    asyncio.run(go())
    assert seen["mode"] == 0o600
    if seen["ids"] != (None, None):
        assert seen["owner"] == seen["ids"]
    assert isinstance(seen["answer"], bytes) and b"403" in seen["answer"]
    assert isinstance(seen["dir"], Path) and not seen["dir"].exists()
