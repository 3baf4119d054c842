"""The node's environment (credentials an operator exported: a database URL with its
password, a Redis URL, the CLI's admin key, cloud keys) stays in the node.

bubblewrap runs as the sandbox's host uid, outside the sandbox: whatever is in its
/proc/PID/environ is readable by that uid. It is given only what it needs (PATH and
the locale); the function inside gets the profile's own environment (--clearenv).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import EXAMPLES, start_node

CANARY = "canary-7d3f0b2e-in-the-node-environment"


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_bubblewrap_gets_none_of_the_node_environment(tmp_path: Path) -> None:
    """A secret in the node's environment is in no sandbox process's environment."""
    node = start_node(
        tmp_path / "data",
        extra_env={"DONJON_API_KEY": "dj_0123456789abcdef_" + "k" * 43, "CLOUD_SECRET": CANARY},
    )
    try:
        source = tmp_path / "hello"
        source.mkdir()
        for name in ("donjon.yaml", "main.py"):
            (source / name).write_text((EXAMPLES / "hello" / name).read_text())
        manifest = (source / "donjon.yaml").read_text()
        (source / "donjon.yaml").write_text(manifest + "isolation: warm\n")
        node.deploy(source)
        assert node.invoke("hello", {}).status_code == 200  # a warm sandbox stays up
        sandboxes = [
            pid
            for pid in _children(node.proc.pid)
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"bwrap")
        ]
        assert sandboxes, "no bubblewrap process found under the node"
        for pid in sandboxes:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert CANARY.encode() not in environ
            assert b"k" * 43 not in environ
            names = {item.split(b"=", 1)[0] for item in environ.split(b"\0") if item}
            assert names <= {b"PATH", b"LANG", b"LC_ALL", b"LC_CTYPE"}, names
    finally:
        node.stop()
