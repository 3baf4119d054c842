"""inotify on the trees every sandbox shares: the Python standard library under /usr and
Donjon's runtime are the host's own directories, bound read-only into each sandbox, and
an inotify watch is on the inode, not the mount. One developer's function that watched
them saw each file another developer's function opened (which modules it imported, when
it ran). A watch on a shared tree cannot be made per sandbox (the inode is the host's):
inotify and fanotify are refused to functions."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from async_support import bundle
from donjon.bundle import build_bundle
from harness import LiveNode

WATCHES = """\
import ctypes, os, select, struct, time

libc = ctypes.CDLL(None, use_errno=True)
ROOTS = (os.path.dirname(os.__file__), "/opt/donjon/donjon_runtime")
IN_OPEN_ACCESS_CLOSE = 0x20 | 0x01 | 0x10


def handler(event, context):
    ctypes.set_errno(0)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    out = {"init": [fd, ctypes.get_errno()], "watches": 0, "refused": [], "seen": []}
    if fd < 0:
        return out
    for root in ROOTS:
        for directory, _, _ in os.walk(root):
            ctypes.set_errno(0)
            if libc.inotify_add_watch(fd, directory.encode(), IN_OPEN_ACCESS_CLOSE) >= 0:
                out["watches"] += 1
            else:
                out["refused"].append(ctypes.get_errno())
    end = time.monotonic() + 20
    while out["watches"] and time.monotonic() < end and "colorsys" not in str(out["seen"]):
        if select.select([fd], [], [], 0.2)[0]:
            data = os.read(fd, 65536)
            at = 0
            while at < len(data):
                size = struct.unpack_from("iIII", data, at)[3]
                out["seen"].append(data[at + 16 : at + 16 + size].rstrip(b"\\0").decode())
                at += 16 + size
    return out
"""
IMPORTS = """\
def handler(event, context):
    import colorsys

    return {"imported": colorsys.__name__}
"""


def _deploy(node: LiveNode, key: str, directory: Path) -> None:
    _, archive = build_bundle(directory)
    with node.client(key) as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code in (200, 201), r.text


def test_cannot_watch_another_tenants_imports_in_shared_trees(
    node: LiveNode, tmp_path: Path
) -> None:
    """A function of one developer cannot set inotify watches on the standard library or
    the runtime, nor see the files another developer's function opens there."""
    spy = node.create_key("atk-inotify-spy", "developer")["key"]
    victim = node.create_key("atk-inotify-victim", "developer")["key"]
    _deploy(node, spy, bundle(tmp_path, "atk-inotify-spy", WATCHES, "timeout_s: 30\n"))
    _deploy(node, victim, bundle(tmp_path, "atk-inotify-victim", IMPORTS))
    box: dict[str, Any] = {}
    spying = threading.Thread(
        target=lambda: box.update(r=node.invoke("atk-inotify-spy", {}, key=spy))
    )
    spying.start()
    try:
        time.sleep(3)  # not a measure: gives the spy its watches before the victim runs
        r = node.invoke("atk-inotify-victim", {}, key=victim)
        assert r.status_code == 200, r.text
    finally:
        spying.join(60)
    assert box["r"].status_code == 200, box["r"].text
    seen = box["r"].json()
    assert "colorsys" not in str(seen["seen"]), seen["seen"][:50]
    assert seen["watches"] == 0, seen["watches"]
    assert seen["init"] == [-1, 1], seen["init"]  # EPERM: inotify is refused outright
